"""``kiln build`` at real scale (issue 11), each figure printed with its target and the load average.

Parts (``--parts``, default all but ``rss``, which makes 200,000 images):

- ``digits``: the default build of the bundled digits sample, seeds 0-4: mean test accuracy, and
  the wall time of the seed-0 build (``kiln build``, 5 folds + final).
- ``workers``: the same build with ``workers = 1`` and ``workers = 2``: speed-up, weights identical.
- ``photos``: 600 RGB "photos" of 224x224, three classes (synthetic beach, forest and city
  scenes with jittered colours and layout, made here): the default build's wall time.
- ``big``: a 60,000-image 28x28 grayscale 10-class dataset made from the digits sample (upscaled,
  rotated, shifted, thickened, noised): the default build's wall time and test accuracy; then 100
  labels fixed and committed, the warm rebuild's time against the cold build's, and both
  accuracies; the anchor: a plain PyTorch loop (tensors in memory, one process) training the
  same network one epoch, against the build's final fit, per image.
- ``ddp``: one fit of the big dataset (no folds, 2 epochs), one process against ``torchrun
  --nproc-per-node 2`` (DistributedDataParallel, gloo).
- ``long`` (with ``big``): the same network trained 15 epochs without folds, against the default.
- ``api``: ``kiln ui``'s ``/api/examples/ID`` (through its workspace) on the big dataset.
- ``rss``: 200,000 64x64 RGB images (2.4 GB of pixels): peak RSS of the build's process tree
  (the build and its workers together), with ``epochs = 1`` (memory does not depend on epochs).

    python bench/bench_scale.py                      # ~25 minutes on 2 quiet cores
    python bench/bench_scale.py --parts big --size 60000
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from figures import print_figures, save
from PIL import Image, ImageDraw, ImageFilter

import datakiln
from datakiln.sources.scan import Candidate

KILN = [sys.executable, "-m", "datakiln"]
ENV = {**os.environ, "KILN_PROGRESS": "0", "KILN_USER": "bench"}
ENV.pop("KILN_JOBS", None)


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def kiln_build(root: Path, *args: str) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    r = subprocess.run([*KILN, "build", "--json", *args], cwd=root, env=ENV, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"bench: kiln build {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return dt, json.loads(r.stdout)


def record(root: Path, bid: str) -> dict[str, Any]:
    return datakiln.find_build(datakiln.Repo(root), bid).record


# ---- datasets ---------------------------------------------------------------------------------


def _digits() -> tuple[np.ndarray, np.ndarray]:
    import gzip
    from importlib import resources

    raw = gzip.decompress(resources.files("datakiln").joinpath("samples/digits.csv.gz").read_bytes()).decode()
    rows = [ln.split(",") for ln in raw.strip().splitlines()[1:]]
    x = np.array([[float(v) for v in r[:64]] for r in rows]).reshape(-1, 8, 8)
    return (x * 255 / 16).astype(np.uint8), np.array([r[64] for r in rows])


_SRC: tuple[np.ndarray, np.ndarray] | None = None


def _digit28(i: int) -> tuple[bytes, str]:
    assert _SRC is not None
    x, y = _SRC
    rng = np.random.default_rng(i)
    k = int(rng.integers(len(x)))
    side = int(rng.integers(16, 23))
    im = Image.fromarray(x[k]).resize((side, side), Image.BILINEAR)
    im = im.rotate(float(rng.uniform(-15, 15)), Image.BILINEAR)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.MaxFilter(3))  # thicker strokes
    canvas = Image.new("L", (28, 28))
    off = 28 - side
    canvas.paste(im, (int(rng.integers(0, off + 1)), int(rng.integers(0, off + 1))))
    a = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 12, (28, 28))
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue(), str(y[k])


def _photo(i: int, side: int = 224) -> tuple[bytes, str]:
    """A synthetic scene photo of one of three kinds, with jittered colours, layout and noise:
    beach (sky over sand, a sea line), forest (trunks and foliage), city (blocks against the sky)."""
    rng = np.random.default_rng(10_000 + i)
    cls = ("beach", "forest", "city")[i % 3]
    jitter = rng.integers(-30, 31, size=3)

    def colour(base: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(int(np.clip(c + j + rng.integers(-15, 16), 0, 255)) for c, j in zip(base, jitter))  # type: ignore[return-value]

    im = Image.new("RGB", (side, side), colour((120, 170, 230)))
    d = ImageDraw.Draw(im)
    horizon = int(side * rng.uniform(0.35, 0.65))
    if cls == "beach":
        d.rectangle([0, horizon, side, side], fill=colour((220, 200, 150)))
        d.rectangle([0, horizon - side // 12, side, horizon], fill=colour((40, 90, 160)))
    elif cls == "forest":
        d.rectangle([0, 0, side, side], fill=colour((50, 110, 50)))
        for _ in range(int(rng.integers(6, 14))):
            x = int(rng.integers(0, side))
            w = int(rng.integers(side // 40, side // 15))
            d.rectangle([x, int(rng.integers(side // 3, side)), x + w, side], fill=colour((90, 60, 30)))
            r = int(rng.integers(side // 12, side // 5))
            cx, cy = x + w // 2, int(rng.integers(0, side // 2))
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour((30, 140, 40)))
    else:
        d.rectangle([0, horizon, side, side], fill=colour((90, 90, 95)))
        for _ in range(int(rng.integers(4, 9))):
            x = int(rng.integers(0, side))
            w = int(rng.integers(side // 12, side // 5))
            top = int(rng.integers(side // 8, horizon))
            d.rectangle([x, top, x + w, horizon], fill=colour((150, 150, 160)))
    a = np.asarray(im, dtype=np.float32) + rng.normal(0, 12, (side, side, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1)).save(
        buf, format="JPEG", quality=85
    )
    return buf.getvalue(), cls


def _small_rgb(i: int) -> tuple[bytes, str]:
    return _photo(i, side=64)


def make_repo(root: Path, n: int, make: Any, what: str) -> datakiln.Repo:
    global _SRC
    _SRC = _digits()
    t = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        made = pool.map(make, range(n), chunksize=500)
    r = datakiln.Repo.init(root)
    r.import_candidates(
        [
            Candidate(name=f"{what}/{i:06d}.png", path=None, label=lab, meta={}, data=data)
            for i, (data, lab) in enumerate(made)
        ]
    )
    r.commit(f"{n} {what}")
    print(f"  made {n:,} {what} in {time.perf_counter() - t:.0f} s", flush=True)
    return r


# ---- parts --------------------------------------------------------------------------------------


def part_digits(tmp: Path, out: dict[str, Any]) -> None:
    r = datakiln.Repo.init(tmp / "digits")
    r.import_sample("digits")
    r.commit("digits")
    accs, times = [], []
    for seed in range(5):
        dt, s = kiln_build(r.root, "--seed", str(seed), "--cold")
        accs.append(s["metrics"]["test"]["accuracy"])
        times.append(dt)
        print(f"  digits seed {seed}: test {accs[-1]:.4f}  build {dt:.1f} s  ({load()})", flush=True)
    out["digits"] = {"test": accs, "mean": float(np.mean(accs)), "seconds": times, "load": os.getloadavg()[0]}


def part_workers(tmp: Path, out: dict[str, Any]) -> None:
    root = tmp / "digits"
    if not root.exists():
        datakiln.Repo.init(root).import_sample("digits")
        datakiln.Repo(root).commit("digits")
    runs: dict[int, list[float]] = {1: [], 2: []}
    sha: dict[int, str] = {}
    for _ in range(2):  # alternating, the faster of two counts
        for w in (1, 2):
            dt, s = kiln_build(root, "--workers", str(w), "--no-cache", "--cold")
            runs[w].append(dt)
            sha[w] = record(root, s["id"])["weights_sha256"]
            print(f"  workers {w}: {dt:.1f} s  ({load()})", flush=True)
    out["workers"] = {
        "seconds": runs,
        "speedup": min(runs[1]) / min(runs[2]),
        "identical": sha[1] == sha[2],
        "load": os.getloadavg()[0],
    }


def part_photos(tmp: Path, out: dict[str, Any]) -> None:
    r = make_repo(tmp / "photos", 600, _photo, "photos")
    dt, s = kiln_build(r.root)
    rec = record(r.root, s["id"])
    print(
        f"  photos: build {dt:.1f} s, test {s['metrics']['test']['accuracy']:.3f}, resolved {rec['resolved']}  ({load()})"
    )
    out["photos"] = {
        "seconds": dt,
        "test": s["metrics"]["test"]["accuracy"],
        "resolved": rec["resolved"],
        "load": os.getloadavg()[0],
    }


def part_big(tmp: Path, out: dict[str, Any], n: int, long: bool = False) -> None:
    r = make_repo(tmp / "big", n, _digit28, "digits28")
    dt, s = kiln_build(r.root)
    rec = record(r.root, s["id"])
    print(
        f"  {n:,} images: default build {dt:.0f} s (train {rec['seconds']['train']:.0f} s), test "
        f"{s['metrics']['test']['accuracy']:.4f}, resolved {rec['resolved']}  ({load()})",
        flush=True,
    )
    # 100 labels fixed: the build has suspects; take 100 train rows and set the label to what it is
    # not (a realistic edit size), commit, build warm.
    train = [x for x in r.ls() if x["split"] == "train"][:100]
    r.label_many([(x["id"], str((int(x["label"]) + 1) % 10)) for x in train])
    r.commit("relabel 100")
    dt_warm, w = kiln_build(r.root)
    dt_cold, c = kiln_build(r.root, "--cold")
    print(
        f"  warm rebuild {dt_warm:.1f} s vs cold {dt_cold:.0f} s: {dt_warm / dt_cold:.3f}x; test warm "
        f"{w['metrics']['test']['accuracy']:.4f} cold {c['metrics']['test']['accuracy']:.4f}  ({load()})",
        flush=True,
    )
    if long:
        # The same network with a long schedule (15 epochs, no folds): how close "auto" gets.
        dt_long, lg = kiln_build(r.root, "--cold", "--epochs", "15", "--folds", "0")
        print(f"  long schedule (15 epochs): test {lg['metrics']['test']['accuracy']:.4f}, {dt_long:.0f} s  ({load()})")
        out["long"] = {"test": lg["metrics"]["test"]["accuracy"], "seconds": dt_long, "load": os.getloadavg()[0]}
    anchor = plain_epoch(r, rec)
    final_per_image = rec["training"]["fit_seconds"]["final"] / (
        rec["resolved"]["epochs"] * rec["metrics"]["train_oos"]["n"]
    )
    print(
        f"  plain PyTorch loop: {anchor * 1e3:.3f} ms/image; kiln's final fit {final_per_image * 1e3:.3f} ms/image  ({load()})"
    )
    out["big"] = {
        "n": n,
        "seconds": dt,
        "test": s["metrics"]["test"]["accuracy"],
        "resolved": rec["resolved"],
        "warm_seconds": dt_warm,
        "cold_seconds": dt_cold,
        "warm_ratio": dt_warm / dt_cold,
        "warm_test": w["metrics"]["test"]["accuracy"],
        "cold_test": c["metrics"]["test"]["accuracy"],
        "plain_ms_per_image": anchor * 1e3,
        "kiln_ms_per_image": final_per_image * 1e3,
        "load": os.getloadavg()[0],
    }


def plain_epoch(r: datakiln.Repo, rec: dict[str, Any]) -> float:
    """Seconds per image of one epoch of a hand-written loop: the pixels as one tensor in memory,
    randperm, AdamW, cross-entropy; the same network, one thread."""
    import torch

    from datakiln.compile.data import gather, pixels
    from datakiln.compile.models import Classifier
    from datakiln.compile.spec import Spec

    torch.set_num_threads(1)
    ex = gather(r.table())
    res = rec["resolved"]
    x = np.asarray(pixels(r.store, r.layout.cache, ex, res["size"], res["channels"]))
    tr = ex.where("train")
    xt, yt = torch.from_numpy(x[tr].astype(np.float32) / 255.0), torch.from_numpy(ex.y[tr])
    model = Classifier(
        Spec().model, x.shape[1:], len(ex.classes), rec["input"]["mean"], rec["input"]["std"], res["stem"]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=0.003)
    loss_fn = torch.nn.CrossEntropyLoss()
    t = time.perf_counter()
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt) - 1, 64):
        idx = perm[i : i + 64]
        loss = loss_fn(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / len(xt)


def part_ddp(tmp: Path, out: dict[str, Any], n: int) -> None:
    """One fit (no folds, 2 epochs) of the big dataset: one process against torchrun with two."""
    root = tmp / "big"
    if not root.exists():
        make_repo(root, n, _digit28, "digits28")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    args = ["--folds", "0", "--epochs", "2", "--no-cache"]
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    times: dict[str, list[float]] = {"one": [], "ddp": []}
    fit: dict[str, list[float]] = {"one": [], "ddp": []}
    for _ in range(2):  # alternating; the faster of two counts
        dt, s = kiln_build(root, *args, "--workers", "1")
        times["one"].append(dt)
        fit["one"].append(record(root, s["id"])["training"]["fit_seconds"]["final"])
        one_test = s["metrics"]["test"]["accuracy"]
        t = time.perf_counter()
        r = subprocess.run(
            [torchrun, "--nproc-per-node", "2", "-m", "datakiln", "build", "--json", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise SystemExit(f"bench: torchrun build failed:\n{r.stderr[-3000:]}")
        times["ddp"].append(time.perf_counter() - t)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        fit["ddp"].append(record(root, d["id"])["training"]["fit_seconds"]["final"])
        ddp_test = d["metrics"]["test"]["accuracy"]
        print(
            f"  one fit: 1 process {fit['one'][-1]:.1f} s ({times['one'][-1]:.1f} s wall), torchrun 2 processes "
            f"{fit['ddp'][-1]:.1f} s ({times['ddp'][-1]:.1f} s wall)  ({load()})",
            flush=True,
        )
    out["ddp"] = {
        "seconds": times,
        "fit_seconds": fit,
        "speedup": min(fit["one"]) / min(fit["ddp"]),
        "wall_speedup": min(times["one"]) / min(times["ddp"]),
        "test_one": one_test,
        "test_ddp": ddp_test,
        "load": os.getloadavg()[0],
    }


def part_api(tmp: Path, out: dict[str, Any], n: int) -> None:
    """``/api/examples/ID`` of kiln ui, through the workspace it serves, at ``n`` examples."""
    from datakiln.server.workspace import Workspace

    root = tmp / "big"
    r = datakiln.Repo(root) if root.exists() else make_repo(root, n, _digit28, "digits28")
    ws = Workspace(root)
    ids = [x["id"] for x in r.ls()[:41]]
    ws.example(ids[0])  # the first request makes the gallery
    times = []
    for eid in ids[1:]:
        t = time.perf_counter()
        ws.example(eid)
        times.append(time.perf_counter() - t)
    ms = float(np.median(times) * 1e3)
    print(f"  /api/examples/ID at {n:,}: median {ms:.1f} ms  ({load()})", flush=True)
    out["api"] = {"n": n, "example_ms": ms, "load": os.getloadavg()[0]}


def part_rss(tmp: Path, out: dict[str, Any], n: int = 200_000) -> None:
    r = make_repo(tmp / "rss", n, _small_rgb, "rgb64")
    (r.root / "kiln.toml").write_text("[train]\nepochs = 1\nfolds = 2\n")
    proc = subprocess.Popen(
        [*KILN, "build", "--json"], cwd=r.root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    peak_sum, peak_one = 0, 0
    t = time.perf_counter()
    while proc.poll() is None:
        rss = _tree_rss(proc.pid)
        peak_sum, peak_one = max(peak_sum, sum(rss)), max(peak_one, max(rss, default=0))
        time.sleep(0.2)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit("bench: the 200k build failed")
    print(
        f"  {n:,} 64x64 RGB: peak RSS of the build's processes together {peak_sum / 2**30:.2f} GB, largest one "
        f"{peak_one / 2**30:.2f} GB; build {dt:.0f} s  ({load()})"
    )
    out["rss"] = {
        "n": n,
        "peak_sum_gb": peak_sum / 2**30,
        "peak_one_gb": peak_one / 2**30,
        "seconds": dt,
        "load": os.getloadavg()[0],
    }


def _tree_rss(pid: int) -> list[int]:
    """Resident bytes of ``pid`` and its descendants."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True).stdout
    rows = [tuple(int(v) for v in ln.split()) for ln in out.splitlines() if ln.strip()]
    tree, grew = {pid}, True
    while grew:
        grew = False
        for p, pp, _ in rows:
            if pp in tree and p not in tree:
                tree.add(p)
                grew = True
    return [rss * 1024 for p, _, rss in rows if p in tree]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="digits,workers,photos,big,ddp,api")
    ap.add_argument("--size", type=int, default=60_000, help="images of the big dataset")
    a = ap.parse_args()
    parts = a.parts.split(",")
    out: dict[str, Any] = {"date": date.today().isoformat(), "cpus": os.cpu_count()}
    print(f"bench_scale: {', '.join(parts)}  ({load()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="kiln-scale-") as d:
        tmp = Path(d)
        if "digits" in parts:
            part_digits(tmp, out)
        if "workers" in parts:
            part_workers(tmp, out)
        if "photos" in parts:
            part_photos(tmp, out)
        if "big" in parts:
            part_big(tmp, out, a.size, "long" in parts)
        if "ddp" in parts:
            part_ddp(tmp, out, a.size)
        if "api" in parts:
            part_api(tmp, out, a.size)
        if "rss" in parts:
            part_rss(tmp, out)
    rows = []
    if "digits" in out:
        rows += [("digits: mean test accuracy, seeds 0-4", out["digits"]["mean"], ">=", 0.98)]
        rows += [("digits: default build, seconds", out["digits"]["seconds"][0], "<=", 60)]
    if "workers" in out:
        rows += [("workers 2 vs 1: speed-up", out["workers"]["speedup"], ">=", 1.7)]
        rows += [("workers 2 vs 1: weights identical (1 = yes)", float(out["workers"]["identical"]), ">=", 1)]
    if "photos" in out:
        rows += [("600 RGB 224 px photos: default build, seconds", out["photos"]["seconds"], "<=", 60)]
    if "big" in out:
        b = out["big"]
        rows += [(f"{b['n']:,} 28 px images: default build, minutes", b["seconds"] / 60, "<=", 15)]
        rows += [("warm rebuild / cold build (100 labels fixed)", b["warm_ratio"], "<=", 0.1)]
        rows += [("warm - cold test accuracy, points", 100 * (b["warm_test"] - b["cold_test"]), ">=", -0.5)]
    if "long" in out:
        rows += [
            (
                "default - long schedule test accuracy, points",
                100 * (out["big"]["test"] - out["long"]["test"]),
                ">=",
                -0.5,
            )
        ]
    if "ddp" in out:
        rows += [("torchrun 2 processes vs 1, one fit: speed-up", out["ddp"]["speedup"], ">=", 1.6)]
        rows += [("  the same, whole command (startup included)", out["ddp"]["wall_speedup"], ">=", 0)]
    if "api" in out:
        rows += [("/api/examples/ID, median ms", out["api"]["example_ms"], "<=", 30)]
    if "rss" in out:
        rows += [("200,000 64 px RGB: peak RSS of the build, GB", out["rss"]["peak_sum_gb"], "<=", 1.5)]
    print_figures(f"bench_scale ({load()})", rows)
    print(f"saved {save('bench_scale', out)}")


if __name__ == "__main__":
    main()
