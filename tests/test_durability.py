"""Nothing lost: kill -9 during commits and imports, concurrent writers, flipped bytes."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import datakiln
from tests.conftest import ENV, kiln, png, write_folder

pytestmark = pytest.mark.slow  # kill -9 at every rename, concurrent writers: not the inner loop

# A child that runs ``kiln ARGS`` but dies (as kill -9 would: no cleanup, no flush) at its K-th
# rename, either just before it or just after it. Renames are the instants where durable state
# changes, so walking K over all of them visits every point where a crash could do harm.
CRASHER = """
import os, sys
k, when = int(sys.argv[1]), sys.argv[2]
real = os.replace
n = [0]
def replace(a, b):
    n[0] += 1
    if n[0] == k and when == "before":
        os._exit(137)
    real(a, b)
    if n[0] == k and when == "after":
        os._exit(137)
os.replace = replace
from datakiln.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _check_consistent(root: Path, old_head: str, edit: tuple[str, str]) -> str:
    """fsck is clean and HEAD is at the old commit (edit still staged) or the new one (edit in)."""
    r = datakiln.Repo(root)
    report = r.fsck()
    assert report.ok, report.errors
    head = r.resolve("HEAD")
    eid, label = edit
    if head == old_head:
        assert r.table().label_of(eid)[0] == label, "a staged edit was lost"
        assert r.status()["staged"]["relabeled"] == 1
    else:
        assert r.read_commit(head).parents == [old_head]
        assert r.table("HEAD").label_of(eid)[0] == label
        assert r.status()["staged"]["relabeled"] == 0, "a committed edit is still staged"
    return head


def test_crash_at_every_rename_of_a_commit(digits: datakiln.Repo) -> None:
    root = digits.root
    ids = digits.table().ids
    for k in range(1, 30):
        for when in ("before", "after"):
            old = datakiln.Repo(root).resolve("HEAD")
            edit = (ids[k], f"crash{k}{when}")
            datakiln.Repo(root).label(*edit)
            proc = subprocess.run(
                [sys.executable, "-c", CRASHER, str(k), when, "-C", str(root), "commit", "-m", f"k={k}"],
                capture_output=True,
                text=True,
                env=ENV,
            )
            new = _check_consistent(root, old, edit)
            if new == old:
                assert proc.returncode == 137, proc.stderr
                datakiln.Repo(root).commit(f"finish k={k}")
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, "the commit never got past all its renames"
    assert k > 3


def test_crash_at_every_rename_of_an_import(repo: datakiln.Repo, tmp_path: Path) -> None:
    src = write_folder(tmp_path / "src", {f"c{i % 2}/{i}.png": png((i, 2 * i, 3)) for i in range(20)})
    for k in range(1, 20):
        proc = subprocess.run(
            [sys.executable, "-c", CRASHER, str(k), "before", "-C", str(repo.root), "import", str(src)],
            capture_output=True,
            text=True,
            env=ENV,
        )
        r = datakiln.Repo(repo.root)
        assert r.fsck().ok
        staged = r.status()["staged"]["added"]
        assert staged in (0, 20)
        if proc.returncode == 0:
            assert staged == 20
            break
        assert staged == 0
    r.gc(prune_seconds=0)
    assert r.fsck().ok and r.fsck().temp_files == 0


def test_kill_9_at_random_instants(digits: datakiln.Repo) -> None:
    """Real SIGKILLs at random times during ``kiln commit`` processes."""
    root = digits.root
    rng = random.Random(7)
    ids = digits.table().ids
    t0 = time.perf_counter()
    kiln("status", cwd=root)
    startup = time.perf_counter() - t0
    for i in range(25):
        old = datakiln.Repo(root).resolve("HEAD")
        edit = (ids[100 + i], f"kill{i}")
        datakiln.Repo(root).label(*edit)
        proc = subprocess.Popen(
            [sys.executable, "-m", "datakiln", "commit", "-m", f"kill {i}"],
            cwd=root,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 1.3) * startup)
        proc.kill()
        proc.wait()
        if _check_consistent(root, old, edit) == old:
            datakiln.Repo(root).commit(f"finish {i}")


WRITER = """
import sys, datakiln
from datakiln.errors import NothingToCommit
root, worker, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = datakiln.Repo(root)
ids = r.table("HEAD").ids
for j in range(n):
    eid = ids[worker * 100 + j]
    if mode == "edits":
        r.commit(f"w{worker} c{j}", edits={eid: f"w{worker}-{j}"})
    else:
        r.label(eid, f"w{worker}-{j}")
        try:
            r.commit(f"w{worker} c{j}")
        except NothingToCommit:
            pass  # another writer committed the shared stage, our edit included
"""


@pytest.mark.parametrize("mode", ["edits", "stage"])
def test_concurrent_writers_lose_nothing(digits: datakiln.Repo, mode: str) -> None:
    root = digits.root
    start = digits.resolve("HEAD")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(w), "25", mode], env=ENV, stderr=subprocess.PIPE, text=True
        )
        for w in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    r = datakiln.Repo(root)
    table = r.table("HEAD")
    ids = table.ids
    for w in range(4):
        for j in range(25):
            assert table.label_of(ids[w * 100 + j])[0] == f"w{w}-{j}"
    log = r.log()
    if mode == "edits":
        assert len(log) == 101
    assert log[-1].id == start and all(len(c.parents) <= 1 for c in log)
    assert r.fsck().ok


def _flip_that_matters(data: bytes, path: Path, rng: random.Random) -> bytearray:
    """A copy of ``data`` with one bit flipped, skipping the bits a loose object's decoder ignores.

    The last byte of a deflate stream carries padding bits: flipping one leaves the inflated
    content, and so the object, identical (git has the same property). Every other flip must be found.
    """
    while True:
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if path.parent.name == "pack" or data[:1] != b"z":
            return flipped
        try:
            same = zlib.decompress(bytes(flipped[1:])) == zlib.decompress(data[1:])
        except zlib.error:
            same = False
        if not same:
            return flipped


def test_fsck_names_a_flipped_byte_in_any_object(digits: datakiln.Repo) -> None:
    digits.label(digits.table().ids[0], "x")
    digits.commit("one more")
    store = digits.store
    targets = (
        [store.loose_path(o) for o in store.loose_ids()]
        + [p.pack_path for p in store.packs()]
        + [p.idx_path for p in store.packs()]
    )
    rng = random.Random(1)
    for path in targets:
        data = path.read_bytes()
        for _ in range(3):
            flipped = _flip_that_matters(data, path, rng)
            path.write_bytes(bytes(flipped))
            report = datakiln.Repo(digits.root).fsck()
            assert not report.ok, f"a flipped byte in {path.name} went unnoticed"
            named = path.parent.name + path.name if len(path.name) == 62 else path.name
            assert any(named in e or "object" in e for e in report.errors), report.errors
            path.write_bytes(data)
    assert datakiln.Repo(digits.root).fsck().ok


def test_fsck_names_the_damaged_blob_in_a_pack(digits: datakiln.Repo) -> None:
    pack = digits.store.packs()[0]
    oid, offset, length = next(pack.entries())
    data = bytearray(pack.pack_path.read_bytes())
    data[offset + length // 2] ^= 0xFF
    pack.pack_path.write_bytes(bytes(data))
    report = datakiln.Repo(digits.root).fsck()
    assert any(oid in e and "does not match its hash" in e for e in report.errors)
    res = kiln("fsck", cwd=digits.root, check=False)
    assert res.returncode == 1 and oid in res.stdout


def test_reading_a_corrupt_object_is_an_error_not_garbage(digits: datakiln.Repo) -> None:
    head = digits.resolve("HEAD")
    path = digits.store.loose_path(head)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(datakiln.IntegrityError, match="kiln fsck"):
        datakiln.Repo(digits.root).log()


def test_gc_removes_only_unreachable(digits: datakiln.Repo, tmp_path: Path) -> None:
    digits.checkout("tmp", create=True)
    digits.import_folder(write_folder(tmp_path / "x", {"a/1.png": png((1, 1, 1)), "a/2.png": png((2, 2, 2))}))
    digits.commit("to be dropped")
    digits.checkout("main")
    digits.delete_branch("tmp", force=True)
    kept = digits.gc()  # default grace period keeps recent objects
    assert kept.removed_objects == 0
    rep = digits.gc(prune_seconds=0)
    assert rep.removed_objects >= 4 and rep.packs_rewritten == 1
    r = datakiln.Repo(digits.root)
    assert r.fsck().ok and r.fsck().dangling == 0
    assert len(r.table("HEAD")) == 1797
    r.read_image(r.table("HEAD").ids[0])


def test_crash_at_every_rename_of_a_merge_keeps_its_second_parent(digits: datakiln.Repo) -> None:
    """The merge's staged result and its state are one file: a kill at any instant leaves both or
    neither, so a commit that finishes the merge always records the other branch as a parent."""
    root = digits.root
    ids = digits.table().ids
    digits.create_branch("other")
    digits.label(ids[0], "0")
    digits.label(ids[1], "1")
    digits.commit("ours")
    main_head = digits.resolve("HEAD")
    digits.checkout("other")
    digits.label(ids[2], "2")
    digits.commit("theirs")
    theirs = digits.resolve("HEAD")
    digits.checkout("main")
    for k in range(1, 20):
        for when in ("before", "after"):
            r = datakiln.Repo(root)
            r.reset()
            r.refs.update("refs/heads/main", main_head, r.resolve("HEAD"))
            proc = subprocess.run(
                [sys.executable, "-c", CRASHER, str(k), when, "-C", str(root), "merge", "other", "-m", "m"],
                capture_output=True,
                text=True,
                env=ENV,
            )
            r = datakiln.Repo(root)
            assert r.fsck().ok
            head = r.resolve("HEAD")
            st = r.status()
            if head != main_head:
                assert r.read_commit(head).parents == [main_head, theirs]
            elif st["staged"]["relabeled"]:
                assert st["merge"] is not None, f"k={k} {when}: the other branch's edits staged without the merge"
                assert r.read_commit(r.commit("finish")).parents == [main_head, theirs]
            else:
                assert st["merge"] is None
        if proc.returncode == 0:
            break
    assert proc.returncode == 0 and k > 1


def test_threads_sharing_one_repository_lock_take_turns(tmp_path: Path) -> None:
    """A server shares a Repo between request threads: its lock must exclude threads, not only
    processes (flock alone let two pushes on the hub both move a branch)."""
    import threading
    import time as _time

    from datakiln.store.fsutil import FileLock

    lock = FileLock(tmp_path / "lock")
    inside: list[int] = []
    overlaps: list[int] = []

    def work() -> None:
        for _ in range(300):
            with lock:
                with lock:  # still reentrant for the thread that holds it
                    inside.append(1)
                    if len(inside) > 1:
                        overlaps.append(1)
                    _time.sleep(0)
                    inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps
