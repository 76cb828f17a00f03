"""The transfer pack and what one repository sends another: real stores on disk, no server."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest

import datakiln
from datakiln.errors import CorruptObject, MissingObject
from datakiln.repo.transfer import check_complete, new_commits, objects_to_send, receive_checked
from datakiln.store import wire
from tests.conftest import png, write_folder


def _repo(path: Path, n: int = 12) -> datakiln.Repo:
    r = datakiln.Repo.init(path)
    write_folder(path / "imgs", {f"{'ab'[i % 2]}/{i}.png": png((i * 20, 10, 10)) for i in range(n)})
    r.import_folder(path / "imgs")
    r.commit("import")
    return r


def _send(src: datakiln.Repo, dst: datakiln.Repo, tip: str, *, images: bool = True) -> int:
    have = list(dst.branches().values())
    objects, _ = objects_to_send(src.store, [tip], have, blobs=images)
    incoming = wire.receive(dst.store, io.BytesIO(wire.encode(src.store, objects)), limit=1 << 30)
    return receive_checked(dst.store, incoming, [tip], images=images)


def test_round_trip_copies_a_repository_and_a_one_label_commit_is_two_objects(tmp_path: Path) -> None:
    src, dst = _repo(tmp_path / "src"), datakiln.Repo.init(tmp_path / "dst")
    tip = src.resolve("main")
    assert _send(src, dst, tip) == 12 + 3  # images, a segment, a state, a commit
    dst.refs.update("refs/heads/main", tip, None)
    assert dst.fsck().ok and dst.table("main").ids == src.table("main").ids
    src.label(src.table("main").ids[0], "b")
    tip2 = src.commit("one label")
    objects, new = objects_to_send(src.store, [tip2], [tip])
    assert new == [tip2] and len(objects) == 2  # the delta and the commit
    assert sum(len(src.store.stored(o)) for o in objects) < 1000


def test_new_commits_stops_at_what_the_other_side_has_even_on_another_branch(tmp_path: Path) -> None:
    r = _repo(tmp_path / "r")
    base = r.resolve("main")
    ids = r.table("main").ids
    r.create_branch("side")
    r.label(ids[0], "b")
    main2 = r.commit("main edit")
    r.checkout("side")
    r.label(ids[1], "a")
    side2 = r.commit("side edit")
    new, boundary = new_commits(r.store, [side2], [main2])
    assert new == [side2] and boundary == {base}
    assert new_commits(r.store, [main2], [main2]) == ([], set())


def test_labels_only_transfer_leaves_images_promised(tmp_path: Path) -> None:
    src, dst = _repo(tmp_path / "src"), datakiln.Repo.init(tmp_path / "dst")
    tip = src.resolve("main")
    assert _send(src, dst, tip, images=False) == 3
    dst.refs.update("refs/heads/main", tip, None)
    report = dst.fsck()
    assert not report.ok  # a full repository must have its images
    dst.set_partial("origin")
    report = datakiln.Repo(dst.root).fsck()
    assert report.ok and report.promised == 12


def _stream(records: list[tuple[bytes, bytes]], *, count: int | None = None, trailer: bytes | None = None) -> bytes:
    body = wire.header(len(records) if count is None else count)
    for raw, stored in records:
        body += wire.RECORD.pack(raw, len(stored)) + stored
    return body + (trailer if trailer is not None else hashlib.sha256(body).digest())


def _files(store_root: Path) -> set[str]:
    return {str(p.relative_to(store_root)) for p in store_root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "case",
    ["bad magic", "hash mismatch", "wrong trailer", "truncated", "zlib bomb", "unknown tag", "over the limit"],
)
def test_hostile_transfer_packs_are_refused_and_leave_nothing(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "OBJECT_MAX", 1 << 20)  # the bomb inflates past 1 MiB, not past 1 GiB
    r = datakiln.Repo.init(tmp_path / "r")
    good = b"hello"
    oid = hashlib.sha256(good).digest()
    data = {
        "bad magic": b"NOTAPACK" + b"\0" * 40,
        "hash mismatch": _stream([(oid, b"rgoodbye")]),
        "wrong trailer": _stream([(oid, b"r" + good)], trailer=b"\0" * 32),
        "truncated": _stream([(oid, b"r" + good)])[:-10],
        "zlib bomb": _stream([(oid, b"z" + zlib.compress(b"\0" * (4 << 20)))]),
        "unknown tag": _stream([(oid, b"x" + good)]),
        "over the limit": _stream([(oid, b"r" + good)]),
    }[case]
    before = _files(r.store.root)
    with pytest.raises(CorruptObject):
        wire.receive(r.store, io.BytesIO(data), limit=40 if case == "over the limit" else 1 << 30)
    assert _files(r.store.root) == before
    assert not list(r.tmp_dir.iterdir())


def test_a_transfer_missing_what_its_commit_needs_is_refused(tmp_path: Path) -> None:
    src, dst = _repo(tmp_path / "src"), datakiln.Repo.init(tmp_path / "dst")
    tip = src.resolve("main")
    objects, _ = objects_to_send(src.store, [tip], [])
    incoming = wire.receive(dst.store, io.BytesIO(wire.encode(src.store, objects[1:])), limit=1 << 30)  # no first image
    with pytest.raises(MissingObject, match="lacks 1 object"):
        receive_checked(dst.store, incoming, [tip])
    assert not list(dst.store.pack_dir.iterdir()) and not list(dst.tmp_dir.iterdir())
    incoming = wire.receive(dst.store, io.BytesIO(wire.encode(src.store, objects)), limit=1 << 30)
    check_complete(dst.store, incoming, [tip])
    incoming.abort()


def test_frame_round_trip_and_limits() -> None:
    buf = io.BytesIO(wire.frame({"a": [1, 2]}) + b"rest")
    assert wire.read_frame(buf, "x") == {"a": [1, 2]} and buf.read() == b"rest"
    with pytest.raises(CorruptObject, match="header"):
        wire.read_frame(io.BytesIO(struct.pack(">I", 1 << 30)), "x")
    with pytest.raises(CorruptObject, match="not JSON"):
        wire.read_frame(io.BytesIO(struct.pack(">I", 3) + b"{{{"), "x")


def _forged_commit(src: datakiln.Repo, **fields: object) -> tuple[str, bytes]:
    """A commit object like HEAD's, with ``fields`` changed: (id, its stored bytes)."""
    from datakiln.store.codec import canonical_json, encode, object_id

    head = src.resolve("main")
    obj = {**src.store.get_json(head), "parents": [head], "message": "forged", **fields}
    content = canonical_json(obj)
    return object_id(content), encode(content, compress=True)


@pytest.mark.parametrize("case", ["stray", "generation", "state is an image"])
def test_a_push_of_a_lying_commit_is_refused(tmp_path: Path, case: str) -> None:
    src, dst = _repo(tmp_path / "src"), datakiln.Repo.init(tmp_path / "dst")
    tip = src.resolve("main")
    _send(src, dst, tip)
    dst.refs.update("refs/heads/main", tip, None)
    head = src.read_commit(tip)
    fields: dict[str, object] = {
        "stray": {"parents": ["ab" * 32]},  # a parent nobody has, on a commit no ref names
        "generation": {"generation": head.generation + 5},
        "state is an image": {"state": src.table("main").blobs[0], "generation": head.generation + 1},
    }[case]
    if case != "generation":
        fields.setdefault("generation", head.generation + 1)
    oid, stored = _forged_commit(src, **fields)
    body = wire.header(1) + wire.RECORD.pack(bytes.fromhex(oid), len(stored)) + stored
    body += hashlib.sha256(body).digest()
    incoming = wire.receive(dst.store, io.BytesIO(body), limit=1 << 30)
    tips = [tip] if case == "stray" else [oid]
    with pytest.raises(CorruptObject):
        receive_checked(dst.store, incoming, tips)
    assert not dst.store.has(oid) and dst.fsck().ok
