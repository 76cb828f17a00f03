"""Issue 11: the compiler at real scale. Parallel fits with the same bits, folds by example id,
the per-step schedule, resolved "auto" keys, warm rebuilds, bounded reads, clean failures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import datakiln
from datakiln.compile.data import PixelFile
from datakiln.compile.plan import folds_of, lr_factor, resolve_epochs, resolve_stem
from datakiln.compile.spec import Spec
from tests.conftest import ENV, kiln, kiln_json

QUICK = "[train]\nepochs = 3\nfolds = 2\n"


def _repo(digits_template: Path, tmp_path: Path, toml: str = QUICK) -> datakiln.Repo:
    root = tmp_path / "r"
    shutil.copytree(digits_template, root)
    (root / "kiln.toml").write_text(toml)
    return datakiln.Repo(root)


# ---- fast: plans, folds, schedule, pixel reads ------------------------------------------------


def test_folds_follow_the_example_id_not_the_row() -> None:
    ids = [f"{i:064x}" for i in range(2000)]
    f = folds_of(ids, 5, seed=0)
    assert set(f.tolist()) == {0, 1, 2, 3, 4} and min(np.bincount(f)) > 300  # balanced enough
    # Adding, removing or reordering examples moves no other example to another fold.
    more = folds_of(["f" * 64, *ids[::-1], "e" * 64], 5, seed=0)
    assert (more[1:-1] == f[::-1]).all()
    assert (folds_of(ids[500:], 5, seed=0) == f[500:]).all()
    assert (folds_of(ids, 5, seed=1) != f).any()  # the seed deals them differently


def test_cosine_reaches_zero_at_the_end_of_a_short_schedule() -> None:
    for steps in (1, 3, 20, 300):
        factors = [lr_factor("cosine", s, steps) for s in range(steps + 1)]
        assert factors[0] == 1.0 and factors[-1] == pytest.approx(0.0, abs=1e-12)
        assert all(a >= b for a, b in zip(factors, factors[1:]))
    # Three epochs of 10 steps: the last epoch's mean rate is far below a quarter of the peak
    # (the per-epoch schedule ran the whole last epoch at 0.25).
    assert np.mean([lr_factor("cosine", s, 30) for s in range(20, 30)]) < 0.1
    assert [lr_factor("step", s, 9) for s in (0, 3, 6, 8)] == pytest.approx([1.0, 0.1, 0.01, 0.01])


def test_auto_keys_resolve_from_the_data() -> None:
    spec = Spec()
    assert resolve_epochs(spec, 1258) == 30 and resolve_epochs(spec, 50_000) == 5
    assert resolve_epochs(spec, 10**6) == 2
    assert resolve_epochs(spec.with_overrides(epochs=7), 50_000) == 7
    assert [resolve_stem(spec, [s, s]) for s in (8, 16, 28, 32, 64, 224)] == [1, 1, 2, 2, 4, 8]
    assert resolve_stem(spec.with_overrides(arch="mlp"), [64, 64]) == 1
    with pytest.raises(datakiln.BadSpec, match="workers"):
        spec.with_overrides(workers=0)
    with pytest.raises(datakiln.BadSpec, match="device"):
        spec.with_overrides(device="tpu")
    with pytest.raises(datakiln.BadSpec, match='integer or "auto"'):
        spec.with_overrides(epochs="many")
    # workers never changes the weights: it is not in the spec's hash (and so not in the build id)
    assert spec.with_overrides(workers=2).hash() == spec.hash() != spec.with_overrides(threads=2).hash()


def test_pixel_file_reads_rows_without_mapping_them(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(50, 3, 4, 5), dtype=np.uint8)
    path = tmp_path / "p.npy"
    np.save(path, x)
    px = PixelFile(path)
    assert px.shape == x.shape and len(px) == 50
    for rows in ([3], [7, 8, 9, 10], [49, 0, 1, 2, 30, 31], []):
        assert (px.take(np.array(rows, dtype=np.int64)) == x[rows]).all()
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        PixelFile(path)


# ---- builds ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_workers_do_not_change_a_bit(digits_template: Path, tmp_path: Path) -> None:
    r = _repo(digits_template, tmp_path)
    one = datakiln.build(r, workers=1, progress=False).build
    weights = (one.package / "weights.safetensors").read_bytes()
    folds = {p.name: p.read_bytes() for p in (one.dir / "fits").iterdir()}
    arrays = one.arrays()
    two = datakiln.build(r, workers=2, no_cache=True, progress=False).build  # two processes
    assert two.id == one.id and two.record["environment"]["workers"] == 2
    assert (two.package / "weights.safetensors").read_bytes() == weights
    assert {p.name: p.read_bytes() for p in (two.dir / "fits").iterdir()} == folds
    assert all((two.arrays()[k] == v).all() for k, v in arrays.items())
    rec = two.record
    assert rec["resolved"] == {**rec["resolved"], "epochs": 3, "stem": 1, "size": [8, 8], "device": "cpu"}
    assert set(rec["training"]["fit_seconds"]) == {"final", "fold-1", "fold-2"}
    assert rec["environment"]["bit_reproducible"] == "same threads and CPU capability"
    # Every file of a build is readable by the group and others, as the umask allows.
    assert oct((two.dir / "predictions.safetensors").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_warm_rebuild_starts_each_fit_from_its_match(digits_template: Path, tmp_path: Path) -> None:
    r = _repo(digits_template, tmp_path, "[train]\nepochs = 6\nfolds = 2\n")
    cold = datakiln.build(r, progress=False).build
    assert cold.record["warm"] is None
    train = [x for x in r.ls() if x["split"] == "train"]
    flipped = {x["id"]: str((int(x["label"]) + 1) % 10) for x in train[:12]}
    r.label_many(list(flipped.items()))
    r.commit("fix 12 labels")
    res = datakiln.build(r, progress=False)
    warm = res.build
    assert not res.cached and warm.record["warm"]["parent"] == cold.id and warm.record["warm"]["fresh"] == 12
    assert warm.record["input"]["mean"] == cold.record["input"]["mean"]  # the parent's normalisation
    # Folds go by id: every example keeps its fold, so each fold's held-out rows stay out of sample.
    assert (warm.arrays()["fold"] == cold.arrays()["fold"]).all()
    # A short schedule: much less training than the cold build.
    assert warm.record["seconds"]["train"] < 0.6 * cold.record["seconds"]["train"]
    assert abs(warm.record["metrics"]["test"]["accuracy"] - cold.record["metrics"]["test"]["accuracy"]) < 0.03
    # Building again is cached; --cold trains from scratch, and the report compares the two.
    assert datakiln.build(r, progress=False).cached
    out = kiln_json("build", "--cold", cwd=r.root)
    assert out["cached"] is False and out["warm_from"] is None and out["id"] != warm.id
    rep = kiln_json("report", warm.id[:10], cwd=r.root)
    assert rep["warm"]["parent"] == cold.id
    assert rep["warm_vs_cold"]["cold"] == out["id"] and rep["warm_vs_cold"]["warm"] == warm.id
    assert "warm vs cold" in kiln("report", warm.id[:10], cwd=r.root).stdout


@pytest.mark.slow
def test_a_damaged_parent_fit_fails_the_build_by_name(digits_template: Path, tmp_path: Path) -> None:
    r = _repo(digits_template, tmp_path)
    cold = datakiln.build(r, progress=False).build
    x = next(x for x in r.ls() if x["split"] == "train")
    r.label(x["id"], str((int(x["label"]) + 1) % 10))
    r.commit("one fix")
    (cold.dir / "fits" / "fold-2.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(datakiln.BuildFailed, match="fold 2 failed in a build worker"):
        datakiln.build(r, workers=2, progress=False)
    assert not list((r.root / ".kiln" / "tmp").glob("build-*")) and len(datakiln.builds(r)) == 1


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _start(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "datakiln", "build", *args],
        cwd=root,
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a command typed in a terminal
    )


def _wait_for_workers(proc: subprocess.Popen[str], n: int) -> list[int]:
    deadline = time.time() + 120
    while time.time() < deadline:
        kids = _children(proc.pid)
        if len(kids) >= n:
            time.sleep(2.0)  # into the training loop
            return kids
        time.sleep(0.1)
    raise AssertionError("the build started no workers")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill a worker", "ctrl-c"])
def test_a_dead_worker_or_ctrl_c_stops_the_whole_build(digits_template: Path, tmp_path: Path, how: str) -> None:
    r = _repo(digits_template, tmp_path, "[train]\nepochs = 200\nfolds = 3\nworkers = 2\n")
    proc = _start(r.root)
    kids = _wait_for_workers(proc, 2)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the build and its workers
    else:
        os.kill(kids[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    if how == "ctrl-c":
        assert proc.returncode == 130 and "interrupted" in err, err
    else:
        assert proc.returncode == 1 and "a build worker died (killed by signal 9" in err, err
        assert "Traceback" not in err
    time.sleep(0.5)
    assert all(not Path(f"/proc/{k}").exists() or "zombie" in _state(k) for k in kids)  # no orphans
    assert not list((r.root / ".kiln" / "tmp").glob("build-*"))
    assert not (r.root / ".kiln" / "builds").exists() or not any((r.root / ".kiln" / "builds").iterdir())


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (FileNotFoundError, IndexError):
        return "zombie"


@pytest.mark.slow
def test_builds_say_which_is_the_default_and_what_differs(digits_template: Path, tmp_path: Path) -> None:
    r = _repo(digits_template, tmp_path, "[train]\nepochs = 2\nfolds = 0\n")
    first = datakiln.build(r, progress=False).build
    other = datakiln.build(r, threads=2, progress=False).build  # differs only in threads
    assert datakiln.find_build(r).id == first.id  # the kiln.toml build, though not the newest
    out = kiln("builds", cwd=r.root).stdout
    lines = {ln[2:14]: ln for ln in out.splitlines() if ln[2:14] in (first.id[:12], other.id[:12])}
    assert lines[first.id[:12]].startswith("*") and not lines[other.id[:12]].startswith("*")
    assert "train.threads=2" in lines[other.id[:12]] and "train.threads" not in lines[first.id[:12]]
    assert "e=auto" not in lines[first.id[:12]] and "e=2" in lines[first.id[:12]]
    assert "default build of report, issues and ui: the build of HEAD under kiln.toml" in out
    # A --no-cache rebuild of the other spec is newest, and still not the default.
    datakiln.build(r, threads=2, no_cache=True, progress=False)
    assert datakiln.find_build(r).id == first.id and datakiln.find_build(r, "latest").id == other.id
    issues = kiln("issues", cwd=r.root)
    assert "judged in-sample" in issues.stderr and "train.folds >= 2" in issues.stderr


@pytest.mark.slow
def test_json_progress_events_cover_the_whole_build(digits_template: Path, tmp_path: Path) -> None:
    r = _repo(digits_template, tmp_path)
    proc = kiln("build", "--json", "--workers", "2", cwd=r.root)
    summary = json.loads(proc.stdout)
    events = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    train = [e for e in events if e["event"] == "progress" and e["phase"] == "train"]
    assert train and {"fits_done", "fits", "active", "fraction", "eta_s", "elapsed_s"} <= set(train[-1])
    assert train[-1]["fits_done"] == train[-1]["fits"] == 3 and train[-1]["fraction"] == 1.0
    assert max(len(e["active"]) for e in train) == 2  # two fits at once
    assert summary["cached"] is False


@pytest.mark.slow
def test_torchrun_shares_one_fit_across_two_processes(digits_template: Path, tmp_path: Path) -> None:
    """DDP on CPU: two gloo processes train each fit together; rank 0 writes one build."""
    r = _repo(digits_template, tmp_path, "[train]\nepochs = 2\nfolds = 2\n")
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc-per-node", "2", "-m", "datakiln", "build", "--json"]
    env = {**ENV, "OMP_NUM_THREADS": "1"}

    def run() -> dict[str, object]:
        proc = subprocess.run(cmd, cwd=r.root, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summaries = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
        assert len(summaries) == 1  # rank 0 speaks for the build
        return summaries[0]

    first = run()
    rec = datakiln.find_build(r, str(first["id"])).record
    assert rec["resolved"]["world"] == 2 and rec["resolved"]["workers"] == 1 and rec["warm"] is None
    assert len(datakiln.builds(r)) == 1 and len(list((r.root / ".kiln" / "jobs").iterdir())) == 1
    assert rec["metrics"]["test"]["accuracy"] > 0.8
    # The same world size gives the same bits; one process is another build (another id).
    weights = (Path(str(first["package"])) / "weights.safetensors").read_bytes()
    assert run()["cached"] is True
    cmd.append("--no-cache")
    again = run()
    assert again["id"] == first["id"] and (Path(str(again["package"])) / "weights.safetensors").read_bytes() == weights
    single = datakiln.build(r, progress=False)
    assert not single.cached and single.build.id != first["id"] and single.build.record["resolved"]["world"] == 1
