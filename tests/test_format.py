"""The on-disk format: golden bytes, round trips, and the delta chain against an in-memory oracle."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datakiln
from datakiln.repo import state
from datakiln.repo import table as tbl
from datakiln.store.objects import ObjectStore, canonical_json, encode
from tests.conftest import png, write_folder


def _store(tmp_path: Path) -> ObjectStore:
    (tmp_path / "objects" / "pack").mkdir(parents=True, exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return ObjectStore(tmp_path / "objects", tmp_path / "tmp")


def test_golden_pack_bytes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    w = store.pack_writer()
    for content in (b"alpha", b"beta"):
        w.add(hashlib.sha256(content).hexdigest(), encode(content, compress=False))
    name = w.finish()
    pack = (store.pack_dir / f"{name}.pack").read_bytes()
    idx = (store.pack_dir / f"{name}.idx").read_bytes()
    body = b"KILNPACK" + (1).to_bytes(4, "big") + b"ralpha" + b"rbeta"
    assert pack == body + hashlib.sha256(body).digest()
    assert name == "pack-" + hashlib.sha256(body).hexdigest()
    records = sorted((hashlib.sha256(c).digest(), off, ln) for c, off, ln in ((b"alpha", 12, 6), (b"beta", 18, 5)))
    head = b"KILNIDX\0" + (1).to_bytes(4, "big") + (2).to_bytes(4, "big")
    table = b"".join(r + off.to_bytes(8, "big") + ln.to_bytes(4, "big") for r, off, ln in records)
    expected = head + table + hashlib.sha256(body).digest()
    assert idx == expected + hashlib.sha256(expected).digest()
    assert store.get(hashlib.sha256(b"beta").hexdigest()) == b"beta"


def test_golden_loose_object_and_ids(tmp_path: Path) -> None:
    store = _store(tmp_path)
    oid = store.put_json({"type": "commit", "b": [1, 2], "a": "é"})
    content = canonical_json({"a": "é", "b": [1, 2], "type": "commit"})
    assert content == '{"a":"é","b":[1,2],"type":"commit"}'.encode()
    assert oid == hashlib.sha256(content).hexdigest()
    stored = store.loose_path(oid).read_bytes()
    assert stored[:1] == b"z"
    import zlib

    assert zlib.decompress(stored[1:]) == content


def test_golden_example_id() -> None:
    from datakiln.sources.images import example_id

    blob = hashlib.sha256(b"image bytes").hexdigest()
    expected = hashlib.sha256(b"kiln-example\0" + blob.encode() + b"\0cat/1.png").hexdigest()[:32]
    assert example_id(blob, "cat/1.png") == expected


values = st.one_of(st.none(), st.text(max_size=8), st.integers(-(2**40), 2**40))


@given(st.lists(values, max_size=50))
def test_column_round_trip(col: list[tbl.Value]) -> None:
    assert tbl.decode_col(tbl.encode_col(col)) == col


hex32 = st.text("0123456789abcdef", min_size=32, max_size=32)
label_sets = st.tuples(
    st.one_of(st.none(), st.text(min_size=1, max_size=5)),
    st.one_of(st.none(), st.text(max_size=5)),
    st.integers(0, 2**33),
)


@given(
    st.lists(hex32, unique=True, max_size=10),
    st.lists(hex32, max_size=5),
    st.dictionaries(hex32, label_sets, max_size=10),
)
def test_changes_round_trip(add: list[str], remove: list[str], sets: dict[str, tbl.LabelSet]) -> None:
    ch = tbl.Changes(add=[a + a for a in add], remove=remove, set=sets)
    back = tbl.Changes.from_json(ch.to_json())
    assert back == ch


ops = st.lists(
    st.one_of(
        st.tuples(st.just("label"), st.integers(0, 29), st.sampled_from(["a", "b", "c", None])),
        st.tuples(st.just("rm"), st.integers(0, 29), st.none()),
        st.tuples(st.just("import"), st.integers(0, 3), st.none()),
        st.tuples(st.just("commit"), st.just(0), st.none()),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_history_matches_an_oracle(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, seq: list[tuple[str, int, str | None]]
) -> None:
    """Every commit's table, read back through deltas and snapshots, equals a plain dict model."""
    monkeypatch.setattr(state, "MAX_DEPTH", 3)  # snapshots every few commits, so both paths run
    tmp = tmp_path_factory.mktemp("oracle")
    r = datakiln.Repo.init(tmp / "r")
    batches = [write_folder(tmp / f"b{k}", {f"c{k}/{i}.png": png((k, i, 7)) for i in range(8)}) for k in range(4)]
    model: dict[str, str | None] = {}
    committed: list[tuple[str, dict[str, str | None]]] = []
    for op, n, lab in seq:
        work = r.table()
        if op == "import":
            r.import_folder(batches[n])
            model = {e: lab for e, lab in zip(r.table().ids, r.table().cols["label"])}
        elif op == "label" and len(work):
            eid = work.ids[n % len(work)]
            r.label(eid, lab)
            model[eid] = lab
        elif op == "rm" and len(work):
            eid = work.ids[n % len(work)]
            r.rm([eid])
            model.pop(eid)
        elif op == "commit" and r.status()["staged"] != {"added": 0, "removed": 0, "relabeled": 0}:
            committed.append((r.commit("c"), dict(model)))
    fresh = datakiln.Repo(r.root)
    for cid, expected in committed:
        t = fresh.table(cid)
        assert {e: t.label_of(e)[0] for e in t.ids} == expected
        assert fresh.read_commit(cid).stats == {
            "examples": len(expected),
            "labeled": sum(v is not None for v in expected.values()),
        }
    assert fresh.fsck().ok


def test_one_label_commit_writes_a_few_hundred_bytes(digits: datakiln.Repo) -> None:
    """Repository bytes; the disposable cache/ (state indexes, pixels) is bounded on its own."""

    def files() -> int:
        kiln = digits.root / ".kiln"
        return sum(
            p.stat().st_size for p in kiln.rglob("*") if p.is_file() and "cache" not in p.relative_to(kiln).parts
        )

    ids = digits.table().ids
    before = files()
    digits.label(ids[0], "x", new_class=True)
    digits.commit("one label")
    assert files() - before <= 1024
    index_dir = digits.layout.index_cache
    written = []
    for i in range(1, 40):  # a label-and-commit loop: a new index file only every few commits
        datakiln.Repo(digits.root).label(ids[i], "x")
        digits.commit(f"label {i}")
        written.append(len(list(index_dir.iterdir())))
    assert max(written) <= 4 and files() - before <= 40 * 1024


def test_snapshot_written_after_max_depth(digits: datakiln.Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "MAX_DEPTH", 4)
    ids = digits.table().ids
    kinds = []
    for i in range(9):
        cid = digits.commit(f"c{i}", edits={ids[i]: "z"})
        kinds.append(digits.store.get_json(digits.read_commit(cid).state)["type"])
    assert kinds.count("snapshot") == 2 and kinds[3] == "snapshot"
    t = datakiln.Repo(digits.root).table("HEAD")
    assert [t.label_of(ids[i])[0] for i in range(9)] == ["z"] * 9
