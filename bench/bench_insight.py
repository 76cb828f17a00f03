"""Side-by-side benchmark of data debugging: kiln's own confident learning and query strategies
against cleanlab (AGPL: used here only, as the anchor) on the same data, in the same run.

1. Label errors: the digits sample with labels corrupted here (never in the sample itself): 10%
   flipped uniformly to another class, 20% asymmetric (class i -> i+1), and none; 5 seeds each.
   kiln's pipeline (a default ``kiln build``, then ``kiln issues``) against cleanlab's
   ``find_label_issues`` on 5-fold logistic-regression probabilities, and cleanlab on kiln's
   own ``pred_probs``. F1 against the flipped set.
2. Active learning: simulated labelling from 20 labels upward in batches of 10, logistic
   regression on the pixels, until 95% of the accuracy of a model trained on every label;
   labels needed per strategy, averaged over 5 seeds; learning curves printed and plotted.
3. Scale: N = 1,000,000, K = 10 from arrays: every function's time and peak extra memory, and
   kiln's label-issue scoring beside cleanlab's on the same arrays.

    python bench/bench_insight.py            # about 6 minutes on 2 cores
    python bench/bench_insight.py --quick    # 1 seed, no builds-heavy parts skipped
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from figures import print_figures, save

import datakiln
from datakiln import review
from datakiln.compile.data import gather, pixels
from datakiln.insight import active, labels, outliers, slices

HERE = Path(__file__).resolve().parent
K = 10


# ---- 1. label errors ---------------------------------------------------------------------------


def corrupt(y: np.ndarray, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    noisy = y.copy()
    if kind == "uniform10":
        flip = rng.random(len(y)) < 0.10
        noisy[flip] = (y[flip] + rng.integers(1, K, flip.sum())) % K
    elif kind == "asym20":
        flip = rng.random(len(y)) < 0.20
        noisy[flip] = (y[flip] + 1) % K
    return noisy


def f1(flagged: np.ndarray, truth: np.ndarray) -> float:
    if truth.sum() == 0:
        return float("nan")
    tp = int((flagged & truth).sum())
    return 2 * tp / max(int(flagged.sum()) + int(truth.sum()), 1)


def lr_oos_probs(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    return np.asarray(cross_val_predict(LogisticRegression(max_iter=2000), x, y, cv=cv, method="predict_proba"))


def noise_trial(template: Path, work: Path, kind: str, seed: int) -> dict[str, Any]:
    from cleanlab.filter import find_label_issues as cl_find

    root = work / f"{kind}-{seed}"
    shutil.copytree(template, root)
    repo = datakiln.Repo(root)
    ex = gather(repo.table())
    y = ex.y.copy()
    noisy = corrupt(y, kind, seed)
    truth = noisy != y
    if truth.any():
        repo.commit(
            f"bench: corrupt labels ({kind}, seed {seed})",
            edits={ex.ids[i]: ex.classes[noisy[i]] for i in np.flatnonzero(truth)},
        )
    t = time.perf_counter()
    datakiln.build(repo, progress=False)
    build_s = time.perf_counter() - t
    ours = {row["id"] for row in review.label_issues(repo)}
    flagged = np.array([e in ours for e in ex.ids])
    # cleanlab on kiln's own pred_probs, aligned by id
    v = review.view(repo)
    pos = {e: i for i, e in enumerate(v.ids)}
    pp = v.pred_probs[[pos[e] for e in ex.ids]]
    cl_ours = cl_find(noisy, pp)
    # cleanlab's reference pipeline: 5-fold logistic regression on the pixels
    x = pixels(repo.store, repo.dir / "cache", ex, [8, 8], 1).reshape(len(ex), -1) / 255.0
    cl_lr = cl_find(noisy, lr_oos_probs(x, noisy, seed))
    shutil.rmtree(root)
    return {
        "kind": kind,
        "seed": seed,
        "flipped": int(truth.sum()),
        "kiln_flagged": int(flagged.sum()),
        "kiln_f1": f1(flagged, truth),
        "cleanlab_on_kiln_f1": f1(cl_ours, truth),
        "cleanlab_lr_f1": f1(cl_lr, truth),
        "cleanlab_lr_flagged": int(cl_lr.sum()),
        "build_s": build_s,
    }


# ---- 2. active learning --------------------------------------------------------------------------


def fit_lr(x: np.ndarray, y: np.ndarray, iters: int = 500, lr: float = 1.0, l2: float = 1e-3) -> np.ndarray:
    """Multinomial logistic regression by full-batch gradient descent (numpy: fast for small sets)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros((xb.shape[1], K))
    onehot = np.eye(K)[y]
    for _ in range(iters):
        w -= lr * (xb.T @ (softmax(xb @ w) - onehot) / len(x) + l2 * w)
    return w


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def proba(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return softmax(np.hstack([x, np.ones((len(x), 1))]) @ w)


def al_run(x: np.ndarray, y: np.ndarray, strategy: str, seed: int, start: int = 20, batch: int = 10) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    test, pool = perm[: len(x) * 3 // 10], perm[len(x) * 3 // 10 :]
    full = float((proba(fit_lr(x[pool], y[pool]), x[test]).argmax(1) == y[test]).mean())
    chosen = list(rng.choice(pool, start, replace=False))
    curve = []
    while True:
        w = fit_lr(x[chosen], y[chosen])
        acc = float((proba(w, x[test]).argmax(1) == y[test]).mean())
        curve.append((len(chosen), acc))
        if acc >= 0.95 * full or len(chosen) >= len(pool):
            break
        cand = np.setdiff1d(pool, chosen)
        pick = active.query(
            proba(w, x[cand]), x[cand], batch, strategy=strategy, labeled_embeddings=x[chosen], seed=seed
        )
        chosen += [int(c) for c in cand[pick]]
    return {"needed": curve[-1][0], "full_accuracy": full, "curve": curve}


def active_learning(x: np.ndarray, y: np.ndarray, seeds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in ("random", "margin", "entropy", "least-confidence", "coreset", "badge", "auto"):
        runs = [al_run(x, y, s, seed) for seed in range(seeds)]
        out[s] = {
            "needed": [r["needed"] for r in runs],
            "mean": float(np.mean([r["needed"] for r in runs])),
            "curves": [r["curve"] for r in runs],
        }
    return out


def plot_curves(res: dict[str, Any], path: Path) -> None:
    from PIL import Image, ImageDraw

    w, h, m = 720, 440, 60
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    colors = {
        "random": (120, 120, 120),
        "margin": (40, 90, 200),
        "auto": (200, 60, 40),
        "badge": (40, 160, 80),
        "coreset": (150, 80, 170),
    }
    xmax = max(n for s in colors for c in res[s]["curves"] for n, _ in c)
    ymin = min(a for s in colors for c in res[s]["curves"] for _, a in c)

    def xy(n: float, a: float) -> tuple[float, float]:
        return m + (n / xmax) * (w - 2 * m), h - m - (a - ymin) / (1 - ymin) * (h - 2 * m)

    d.line([(m, h - m), (w - m, h - m)], fill="black")
    d.line([(m, m), (m, h - m)], fill="black")
    d.text((w // 2 - 60, h - m + 25), "labels (seed 0)", fill="black")
    d.text((8, m - 30), "test accuracy", fill="black")
    for frac in (0.0, 0.5, 1.0):
        d.text((m + frac * (w - 2 * m) - 10, h - m + 6), f"{frac * xmax:.0f}", fill="black")
        d.text((8, h - m - frac * (h - 2 * m) - 6), f"{ymin + frac * (1 - ymin):.2f}", fill="black")
    for k, (s, col) in enumerate(colors.items()):
        pts = [xy(n, a) for n, a in res[s]["curves"][0]]
        if len(pts) > 1:
            d.line(pts, fill=col, width=2)
        d.text((w - m - 120, m + 16 * k), f"{s}: {res[s]['mean']:.0f} labels", fill=col)
    im.save(path)


# ---- 3. scale ----------------------------------------------------------------------------------


def timed(fn: Any) -> float:
    """Wall seconds of one call, without tracemalloc (which slows allocation-heavy Python code)."""
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def peak_mb(fn: Any) -> float:
    """Peak memory one call allocates (numpy reports its buffers to tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def scale(n: int = 1_000_000, d: int = 64) -> dict[str, Any]:
    from cleanlab.filter import find_label_issues as cl_find

    rng = np.random.default_rng(0)
    true = rng.integers(0, K, n)
    logits = rng.normal(0, 1, (n, K))
    logits[np.arange(n), true] += 3
    pp = softmax(logits).astype(np.float32)
    noisy = true.copy()
    flip = rng.random(n) < 0.1
    noisy[flip] = (noisy[flip] + rng.integers(1, K, flip.sum())) % K
    emb = rng.standard_normal((n, d)).astype(np.float32)
    meta = {"source": [f"s{i % 40}" for i in range(n)]}
    out: dict[str, Any] = {"n": n, "k": K, "d": d}

    def ours() -> np.ndarray:
        issues = labels.find_label_issues(noisy, pp)
        return labels.rank_issues(noisy, pp, issues)

    funcs = {
        "label_issues_ranked": ours,
        "outlier_scores": lambda: outliers.outlier_scores(emb, noisy),
        "near_duplicates": lambda: outliers.near_duplicates(emb),
        "weak_slices": lambda: slices.weak_slices(noisy, pp, meta),
        "queue_auto_50": lambda: active.query(pp, emb, 50, labeled_embeddings=emb[:100_000]),
        "queue_badge_50": lambda: active.query(pp, emb, 50, strategy="badge", labeled_embeddings=emb[:100_000]),
    }
    for name, fn in funcs.items():
        out[name] = {"s": timed(fn), "peak_mb": peak_mb(fn)}
    best_ours = min(timed(ours) for _ in range(2))
    best_cl = min(timed(lambda: cl_find(noisy, pp, return_indices_ranked_by="self_confidence")) for _ in range(2))
    out["scoring"] = {"kiln_s": best_ours, "cleanlab_s": best_cl, "ratio": best_ours / best_cl}
    # The mask alone (no ranking) on both sides, for a like-for-like look at the core.
    mask_ours = min(timed(lambda: labels.find_label_issues(noisy, pp)) for _ in range(2))
    mask_cl = min(timed(lambda: cl_find(noisy, pp)) for _ in range(2))
    out["scoring_mask_only"] = {"kiln_s": mask_ours, "cleanlab_s": mask_cl, "ratio": mask_ours / mask_cl}
    return out


# ---- main --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "kiln-bench-insight"))
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    template = work / "template"
    r0 = datakiln.Repo.init(template)
    r0.import_sample("digits")
    r0.commit("digits")
    res: dict[str, Any] = {"date": str(date.today()), "cores": os.cpu_count(), "seeds": args.seeds}

    print(f"label errors: {args.seeds} seeds x 3 conditions, one default build each ...", flush=True)
    trials = [
        noise_trial(template, work, kind, s) for kind in ("uniform10", "asym20", "none") for s in range(args.seeds)
    ]
    res["trials"] = trials

    def mean(kind: str, key: str) -> float:
        return float(np.mean([t[key] for t in trials if t["kind"] == kind]))

    n_examples = len(datakiln.Repo(template).table())
    res["noise"] = {
        kind: {k: mean(kind, k) for k in ("kiln_f1", "cleanlab_on_kiln_f1", "cleanlab_lr_f1")}
        for kind in ("uniform10", "asym20")
    }
    res["no_noise_flagged_share"] = mean("none", "kiln_flagged") / n_examples

    print("active learning simulation ...", flush=True)
    ex = gather(r0.table())
    x = pixels(r0.store, r0.dir / "cache", ex, [8, 8], 1).reshape(len(ex), -1) / 255.0
    al = active_learning(x, ex.y, args.seeds)
    res["active"] = {s: {"needed": v["needed"], "mean": v["mean"]} for s, v in al.items()}
    res["active_ratio"] = al["auto"]["mean"] / al["random"]["mean"]
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    plot_curves(al, out_dir / f"active-learning-{res['date']}.png")

    print("scale: N = 1,000,000, K = 10 ...", flush=True)
    res["scale"] = scale()

    rows = [
        ("F1, 10% uniform noise (kiln build + issues)", res["noise"]["uniform10"]["kiln_f1"], ">=", 0.86),
        ("F1, 20% asymmetric noise", res["noise"]["asym20"]["kiln_f1"], ">=", 0.79),
        ("share flagged with no injected noise", res["no_noise_flagged_share"], "<=", 0.005),
        ("labels to 95% of full accuracy, auto / random", res["active_ratio"], "<=", 0.6),
        ("label-issue scoring at 1M, kiln / cleanlab", res["scale"]["scoring"]["ratio"], "<=", 0.5),
    ]
    worst_s = max(v["s"] for k, v in res["scale"].items() if isinstance(v, dict) and "peak_mb" in v)
    worst_mb = max(v["peak_mb"] for k, v in res["scale"].items() if isinstance(v, dict) and "peak_mb" in v)
    rows += [
        ("slowest function at 1M (s)", worst_s, "<=", 2.0),
        ("largest peak extra memory at 1M (MB)", worst_mb, "<=", 1024),
    ]
    ok_all = print_figures(
        f"data debugging on the digits sample and at 1M rows, {res['date']}, {res['cores']} cores, {args.seeds} seeds",
        rows,
    )
    for kind in ("uniform10", "asym20"):
        nz = res["noise"][kind]
        print(
            f"  {kind}: kiln {nz['kiln_f1']:.3f}; cleanlab on kiln's pred_probs {nz['cleanlab_on_kiln_f1']:.3f}; "
            f"cleanlab on 5-fold logistic regression {nz['cleanlab_lr_f1']:.3f}"
        )
    print("  labels needed (mean of seeds): " + ", ".join(f"{s} {v['mean']:.0f}" for s, v in res["active"].items()))
    for s in ("random", "margin", "auto"):
        print(f"  curve {s} (seed 0): " + " ".join(f"{n}:{a:.3f}" for n, a in al[s]["curves"][0]))
    sc = res["scale"]
    mo = sc["scoring_mask_only"]
    print(
        f"  scoring at 1M, ranked: kiln {sc['scoring']['kiln_s']:.2f} s, cleanlab {sc['scoring']['cleanlab_s']:.2f} s; "
        f"mask only: kiln {mo['kiln_s']:.2f} s, cleanlab {mo['cleanlab_s']:.2f} s ({mo['ratio']:.2f}x)"
    )
    for k, v in sc.items():
        if isinstance(v, dict) and "peak_mb" in v:
            print(f"  {k:<22} {v['s']:.2f} s, peak {v['peak_mb']:.0f} MB")
    path = save("insight", res)
    print(f"results: {path}; learning curves: {out_dir / ('active-learning-' + res['date'] + '.png')}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
