"""``kiln sweep``: build one model per width and chart accuracy against prediction latency.

Latency is measured on the package through onnxruntime, as it would be served: the median time
of a batch (256 by default), over repeats after a warm-up.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..package import Model, read_package_files
from .builder import build
from .spec import Spec

if TYPE_CHECKING:
    from ..repo import Repo


def batch_latency(model: Model, batch: int = 256, repeats: int = 20, seed: int = 0) -> dict[str, float]:
    """Median, p50 and p99 seconds for one forward pass of ``batch`` random images."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, model.channels, *model.size), dtype=np.float32)
    model.run(x)  # warm-up: the first run allocates
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - t)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)), "batch": batch}


def pareto(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points no other point beats on both accuracy (higher) and latency (lower), fastest first."""
    front: list[dict[str, Any]] = []
    for p in sorted(points, key=lambda p: (p["latency_s"], -(p["accuracy"] or 0))):
        if not front or (p["accuracy"] or 0) > (front[-1]["accuracy"] or 0):
            front.append(p)
    return front


def sweep(
    repo: Repo, widths: list[float], *, rev: str = "HEAD", spec: Spec, batch: int = 256, progress: bool | None = None
) -> dict[str, Any]:
    points = []
    for w in widths:
        res = build(repo, rev, spec.with_overrides(**{"model.width": w}), progress=progress)
        model = Model(read_package_files(res.build.package), str(res.build.package))
        lat = batch_latency(model, batch)
        m = res.build.record["metrics"]
        acc = m["test"]["accuracy"] if m["test"]["accuracy"] is not None else m["valid"]["accuracy"]
        points.append(
            {"width": w, "build": res.build.id, "cached": res.cached, "accuracy": acc, "latency_s": lat["p50"]}
        )
    front = pareto(points)
    for p in points:
        p["pareto"] = p in front
    return {"batch": batch, "metric": "test accuracy", "points": points}


def plot(result: dict[str, Any], out: Path) -> Path:
    """A PNG of accuracy against latency, with the Pareto front joined (Pillow only)."""
    from PIL import Image, ImageDraw

    pts = result["points"]
    w, h, m = 640, 420, 60
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    lat = [p["latency_s"] * 1000 for p in pts]
    acc = [p["accuracy"] or 0.0 for p in pts]
    x0, x1 = 0.0, max(lat) * 1.1
    y0, y1 = min(acc) - 0.01, min(1.0, max(acc) + 0.01)

    def xy(lx: float, ay: float) -> tuple[float, float]:
        return m + (lx - x0) / (x1 - x0 or 1) * (w - 2 * m), h - m - (ay - y0) / (y1 - y0 or 1) * (h - 2 * m)

    d.line([(m, h - m), (w - m, h - m)], fill="black")
    d.line([(m, m), (m, h - m)], fill="black")
    d.text((w // 2 - 90, h - m + 25), f"latency per batch of {result['batch']} (ms)", fill="black")
    d.text((8, m - 30), "accuracy (test split)", fill="black")
    for frac in (0.0, 0.5, 1.0):
        d.text((m + frac * (w - 2 * m) - 10, h - m + 6), f"{x0 + frac * (x1 - x0):.1f}", fill="black")
        d.text((8, h - m - frac * (h - 2 * m) - 6), f"{y0 + frac * (y1 - y0):.3f}", fill="black")
    front = [xy(p["latency_s"] * 1000, p["accuracy"] or 0.0) for p in pts if p["pareto"]]
    front.sort()
    if len(front) > 1:
        d.line(front, fill=(200, 60, 40), width=2)
    for p, lx, ay in zip(pts, lat, acc):
        cx, cy = xy(lx, ay)
        d.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=(200, 60, 40) if p["pareto"] else (120, 120, 120))
        d.text((cx + 8, cy - 14), f"width {p['width']:g}", fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    im.save(out)
    return out
