"""The review commands at scale: ``kiln outliers``, ``kiln issues`` and ``kiln slices`` on a
repository of N examples (default 70,000, the size at which a trial saw ``kiln outliers`` take
122 s and 1.1 GB), each timed cold (first run: thumbnails decoded) and warm, with its peak
memory (max RSS of the process) and the load average beside it.

The repository is the bench's synthetic PNGs (bench/gen_images.py), imported from a manifest. Its
build is made from arrays (a default build of 70,000 images is issue 11's subject, not this
one's): the review commands read only a build's stored arrays, in the format ``kiln build``
writes (docs/build.md), so the figures are those of the commands themselves.

    python bench/bench_review.py              # N = 70,000
    python bench/bench_review.py --n 10000    # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import print_figures, save  # noqa: E402
from gen_images import generate  # noqa: E402

KILN = [sys.executable, "-m", "datakiln"]
ENV = {**os.environ, "KILN_PROGRESS": "0"}


def repository(base: Path, n: int) -> Path:
    """A committed repository of N synthetic PNGs with an out-of-sample build made from arrays."""
    from safetensors.numpy import save_file

    import datakiln

    data, root = base / f"data-{n}", base / f"repo-{n}"
    if not (data / "labels.csv").exists():
        generate(data, n)
    if not (root / ".kiln").exists():
        r = datakiln.Repo.init(root)
        r.import_manifest(data / "labels.csv")
        r.commit("images")
    r = datakiln.Repo(root)
    t = r.table()
    classes = sorted({str(v) for v in t.cols["label"]})
    y = np.array([classes.index(str(v)) for v in t.cols["label"]], dtype=np.int64)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((n, len(classes))) + 4.0 * np.eye(len(classes))[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    emb = (rng.standard_normal((n, 64)) + 2.0 * np.eye(len(classes), 64)[y]).astype(np.float32)
    bid = "be" * 10
    d = r.layout.builds / bid
    shutil.rmtree(d, ignore_errors=True)  # written afresh each run: the record format may have moved on
    d.mkdir(parents=True)
    save_file(
        {"pred_probs": probs.astype(np.float32), "embeddings": emb, "y": y, "fold": np.zeros(n, np.int64)},
        str(d / "predictions.safetensors"),
    )
    splits = [str(s) for s in t.cols["split"]]
    (d / "examples.json").write_text(json.dumps({"ids": t.ids, "splits": splits, "labels": t.cols["label"]}))
    record = {"id": bid, "created": time.time(), "classes": classes, "lineage": {"commit": r.head()[1]}}
    none = {"accuracy": None, "n": 0}
    record.update(training={"oos": True}, spec={}, seconds={"total": 0.0})
    record.update(metrics={"valid": none, "test": none, "train_oos": none})
    (d / "build.json").write_text(json.dumps(record))
    return root


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """(seconds, peak MB of that process, load average) of one command."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{err[-2000:]}")
    return dt, usage.ru_maxrss / 1024, os.getloadavg()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=70_000)
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "kiln-bench-review")
    args = ap.parse_args()
    root = repository(args.work, args.n)
    shutil.rmtree(root / ".kiln" / "cache", ignore_errors=True)
    res: dict[str, Any] = {"n": args.n, "date": str(date.today()), "cores": os.cpu_count()}
    for name in ("outliers", "issues", "slices"):
        for run in ("cold", "warm"):
            s, mb, load = timed([*KILN, name, "--json"], root)
            res[f"{name}_{run}"] = {"s": round(s, 3), "peak_mb": round(mb), "load": round(load, 2)}
            print(f"kiln {name:<9} {run}: {s:7.2f} s  peak {mb:6.0f} MB  load {load:.2f}", flush=True)
    o = res["outliers_cold"]
    ok = print_figures(
        f"review commands, N = {args.n:,}, {res['date']}, {res['cores']} cores (the trial: 122 s, 1.1 GB)",
        [
            ("kiln outliers, cold (s)", o["s"], "<=", 30.0),
            ("kiln outliers, warm (s)", res["outliers_warm"]["s"], "<=", 10.0),
            ("kiln outliers, peak memory (GB)", o["peak_mb"] / 1024, "<=", 1.0),
        ],
    )
    print(f"results: {save('review', res)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
