"""Model expectations: what a build must satisfy, measured on its held-out examples.

The ``[expect]`` section of kiln.toml (``spec.ExpectSpec``) states minimum accuracies (overall,
per class, per metadata slice), a maximum p99 latency per image, and maximum accuracy drops
under seeded perturbations: Gaussian noise, a random translation, a random brightness scale, and
a gradient-sign (FGSM) attack. They are the guards 2.0 code needs where 1.0 code has unit tests:
a network that is accurate on average can still fail one class, one camera, or a slightly
darker image. ``kiln build`` checks them after training, ``kiln test BUILD`` re-checks them, and
``kiln publish`` refuses a build that fails them unless forced. Results live beside the build in
``expect.json`` (rewritten when the expectations change: they never change the weights).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NotBuildable
from ..store.fsutil import atomic_write
from .data import PixelFile, gather, pixel_file
from .records import BuildRecord
from .spec import ExpectSpec, parse_dict

if TYPE_CHECKING:
    from ..repo import Repo

EXPECT_JSON = "expect.json"
LATENCY_RUNS = 200  # single-image calls timed for the p99


def last_results(b: BuildRecord) -> dict[str, Any] | None:
    """The results of the last expectations checked on build ``b``, or None."""
    try:
        data = json.loads((b.dir / EXPECT_JSON).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("checks"), list) else None


def saved(b: BuildRecord, expect: ExpectSpec) -> dict[str, Any] | None:
    """The results in the build for exactly these expectations, or None."""
    data = last_results(b)
    return data if data is not None and data.get("expect") == dataclasses.asdict(expect) else None


def ensure(repo: Repo, b: BuildRecord, expect: ExpectSpec) -> dict[str, Any] | None:
    """The results of ``expect`` for build ``b``: saved ones, else measured now and saved. None
    when ``expect`` asks for nothing."""
    if not expect.checks():
        return None
    return saved(b, expect) or check(repo, b, expect)


def check(repo: Repo, b: BuildRecord, expect: ExpectSpec) -> dict[str, Any]:
    """Measure every expectation on the build's held-out split and save the results."""
    rec = b.record
    spec = parse_dict(rec["spec"], f"build {b.id}")
    ex = gather(repo.table_at(rec["lineage"]["commit"]), use_model_labels=spec.train.use_model_labels)
    classes: list[str] = rec["classes"]
    index = {c: i for i, c in enumerate(classes)}
    split = "test" if len(ex.where("test")) else "valid"
    held = np.array([i for i in ex.where(split) if ex.labels[i] in index], dtype=np.int64)
    if len(held) == 0:
        raise NotBuildable(f"build {b.id[:12]} has no labeled {split} examples to check its expectations on")
    y = np.array([index[str(ex.labels[i])] for i in held], dtype=np.int64)
    size, channels = rec["resolved"]["size"], rec["resolved"]["channels"]
    px = PixelFile(pixel_file(repo.store, repo.layout.cache, ex, size, channels))
    x = np.divide(px.take(held), 255.0, dtype=np.float32)
    px.close()
    net = _network(b, spec)
    clean = _accuracy(net, x, y)
    checks: list[dict[str, Any]] = []

    def add(name: str, measured: float, op: str, limit: float) -> None:
        ok = measured >= limit if op == ">=" else measured <= limit
        checks.append({"name": name, "measured": round(measured, 6), "op": op, "limit": limit, "passed": bool(ok)})

    if expect.accuracy is not None:
        add("accuracy", clean, ">=", expect.accuracy)
    if expect.class_accuracy is not None:
        pred = _predict(net, x)
        for k, name in enumerate(classes):
            mine = y == k
            if mine.any():
                add(f"class {name} accuracy", float((pred[mine] == k).mean()), ">=", expect.class_accuracy)
    if expect.slice_accuracy is not None:
        for s in rec["metrics"].get("slices", []):
            column = str(s["slice"]).split("=", 1)[0]
            if column not in ("split", "label") and s["n"] >= expect.slice_min_n:
                add(f"slice {s['slice']} accuracy (n={s['n']})", float(s["accuracy"]), ">=", expect.slice_accuracy)
    if expect.p99_ms is not None:
        add("p99 ms per image", _p99_ms(b, x), "<=", expect.p99_ms)
    rng = np.random.default_rng(expect.seed)
    perturbations: list[tuple[str, float | None, Callable[[], np.ndarray]]] = [
        ("noise", expect.noise_drop, lambda: _noise(x, expect.noise_sigma, rng)),
        ("shift", expect.shift_drop, lambda: _shift(x, expect.shift_pixels, rng)),
        ("brightness", expect.brightness_drop, lambda: _brightness(x, expect.brightness, rng)),
        ("fgsm", expect.fgsm_drop, lambda: _fgsm(net, x, y, expect.fgsm_epsilon)),
    ]
    for name, limit, perturb in perturbations:
        if limit is not None:
            add(f"{name} accuracy drop", clean - _accuracy(net, perturb(), y), "<=", limit)
    result = {
        "build": b.id,
        "passed": all(c["passed"] for c in checks),
        "split": split,
        "n": int(len(held)),
        "clean_accuracy": round(clean, 6),
        "checks": checks,
        "expect": dataclasses.asdict(expect),
        "checked": time.time(),
    }
    atomic_write(b.dir / EXPECT_JSON, (json.dumps(result, indent=2) + "\n").encode(), b.dir)
    return result


def _network(b: BuildRecord, spec: Any) -> Any:
    """The build's network as a torch module in eval mode, from its package's weights."""
    import torch
    from safetensors.numpy import load_file

    from .models import Classifier

    rec = b.record
    r, inp = rec["resolved"], rec["input"]
    torch.set_num_threads(spec.train.threads)
    net = Classifier(spec.model, (r["channels"], *r["size"]), len(rec["classes"]), inp["mean"], inp["std"], r["stem"])
    state = {k: torch.from_numpy(v) for k, v in load_file(str(b.package / "weights.safetensors")).items()}
    net.load_state_dict(state)
    return net.eval()


def _predict(net: Any, x: np.ndarray) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(x), 256):
            out.append(net(torch.from_numpy(x[start : start + 256])).argmax(1).numpy())
    return np.concatenate(out)


def _accuracy(net: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float((_predict(net, x) == y).mean())


def _noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy: np.ndarray = np.clip(x + rng.normal(0, sigma, x.shape).astype(np.float32), 0, 1)
    return noisy


def _shift(x: np.ndarray, pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Each image translated by up to ``pixels`` in each direction, the border filled with zeros."""
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pixels, pixels), (pixels, pixels)))
    dy, dx = rng.integers(0, 2 * pixels + 1, size=(2, n))
    return np.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def _brightness(x: np.ndarray, b: float, rng: np.random.Generator) -> np.ndarray:
    scale = rng.uniform(1 - b, 1 + b, size=(len(x), 1, 1, 1)).astype(np.float32)
    return np.clip(x * scale, 0, 1)


def _fgsm(net: Any, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """Goodfellow et al.'s fast gradient-sign attack: one step of size ``eps`` up the loss."""
    import torch

    out = []
    for start in range(0, len(x), 256):
        xb = torch.from_numpy(x[start : start + 256].copy()).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(net(xb), torch.from_numpy(y[start : start + 256]))
        (grad,) = torch.autograd.grad(loss, xb)
        out.append(torch.clamp(xb + eps * grad.sign(), 0, 1).detach().numpy())
    return np.concatenate(out)


def _p99_ms(b: BuildRecord, x: np.ndarray) -> float:
    """p99 of one image through the package's ONNX graph, as ``kiln serve`` and ``predict`` run it."""
    from ..package import load

    model = load(b.package)
    one = [x[i % len(x)][None] for i in range(LATENCY_RUNS)]
    for item in one[:10]:
        model.run(item)
    times = []
    for item in one:
        t = time.perf_counter()
        model.run(item)
        times.append(time.perf_counter() - t)
    return float(np.percentile(np.array(times) * 1000, 99))
