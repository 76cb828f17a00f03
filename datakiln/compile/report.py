"""Reading builds: a report of one, and the behaviour difference between two. numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np

from .expect import last_results
from .records import BuildRecord


def report(b: BuildRecord, builds: list[BuildRecord] | None = None) -> dict[str, Any]:
    """The shape of ``kiln report --json``: metrics, per-class table, confusion matrix, slices;
    with ``builds`` (every build), how a warm build compares with the cold build of the same
    data and spec when both exist."""
    r = b.record
    m = r["metrics"]
    return {
        "id": r["id"],
        "commit": r["lineage"]["commit"],
        "spec": r["spec"],
        "resolved": r.get("resolved", {}),
        "warm": r.get("warm"),
        "warm_vs_cold": warm_vs_cold(b, builds or []),
        "input": r["input"],
        "classes": r["classes"],
        "metrics": {s: m[s] for s in ("valid", "test", "train_oos")},
        "per_class": m["per_class"],
        "confusion": m["confusion"],
        "slices": m["slices"],
        "training": {k: v for k, v in r["training"].items() if k != "history"},
        "environment": r["environment"],
        "seconds": r["seconds"],
        "package": str(b.package),
        "backbone": r["lineage"].get("backbone"),
        "expect": last_results(b),
    }


def warm_vs_cold(b: BuildRecord, builds: list[BuildRecord]) -> dict[str, Any] | None:
    """Accuracy and time of the warm and the cold build of one dataset state and spec, if both exist."""

    def key(x: BuildRecord) -> tuple[Any, ...]:
        lin = x.record["lineage"]
        return lin.get("state"), lin.get("spec_hash"), x.record.get("resolved", {}).get("device")

    twins = [x for x in builds if key(x) == key(b) and bool(x.record.get("warm")) != bool(b.record.get("warm"))]
    if not twins:
        return None
    other = twins[-1]
    warm, cold = (b, other) if b.record.get("warm") else (other, b)
    wm, cm = warm.record["metrics"], cold.record["metrics"]
    return {
        "warm": warm.id,
        "cold": cold.id,
        **{s: {"warm": wm[s]["accuracy"], "cold": cm[s]["accuracy"]} for s in ("valid", "test", "train_oos")},
        "seconds": {"warm": warm.record["seconds"]["total"], "cold": cold.record["seconds"]["total"]},
    }


def _correct_by_id(b: BuildRecord) -> tuple[dict[str, int], np.ndarray, list[str], list[str | None]]:
    ex = b.examples()
    arr = b.arrays()
    y, probs = arr["y"], arr["pred_probs"]
    classes = b.record["classes"]
    pred = probs.argmax(1)
    # Compare by label name: two builds may have different class lists.
    # In-sample rows (train examples of a build without cross-fitting) are not compared.
    oos = (arr["fold"] >= 0) | (np.array(ex["splits"]) != "train")
    given = [classes[v] if v >= 0 and ok else None for v, ok in zip(y, oos)]
    predicted = [classes[v] for v in pred]
    correct = np.array([g is not None and g == p for g, p in zip(given, predicted)])
    return {eid: i for i, eid in enumerate(ex["ids"])}, correct, predicted, given


def compare(a: BuildRecord, b: BuildRecord, *, limit: int = 50) -> dict[str, Any]:
    """Accuracy deltas per split and class, and the examples one build gets right and the other wrong.

    Examples are compared on their out-of-sample predictions, over the examples both builds
    labeled the same way; ``newly_wrong`` are right in ``a`` and wrong in ``b``.
    """
    ia, ca, pa, ga = _correct_by_id(a)
    ib, cb, pb, gb = _correct_by_id(b)
    shared = [eid for eid in ia if eid in ib and ga[ia[eid]] is not None and ga[ia[eid]] == gb[ib[eid]]]
    newly_wrong: list[dict[str, Any]] = []
    newly_right: list[dict[str, Any]] = []
    for eid in shared:
        i, j = ia[eid], ib[eid]
        if ca[i] != cb[j]:
            row = {"id": eid, "label": ga[i], "a": pa[i], "b": pb[j]}
            (newly_right if cb[j] else newly_wrong).append(row)
    ma, mb = a.record["metrics"], b.record["metrics"]
    splits = {}
    for s in ("valid", "test", "train_oos"):
        acc_a, acc_b = ma[s]["accuracy"], mb[s]["accuracy"]
        delta = acc_b - acc_a if acc_a is not None and acc_b is not None else None
        splits[s] = {"a": acc_a, "b": acc_b, "delta": delta}
    return {
        "a": a.id,
        "b": b.id,
        "splits": splits,
        "per_class_split": ma["per_class"]["split"],
        "per_class": _class_deltas(ma["per_class"]["classes"], mb["per_class"]["classes"]),
        "shared_examples": len(shared),
        "newly_wrong_count": len(newly_wrong),
        "newly_right_count": len(newly_right),
        "newly_wrong": newly_wrong[:limit],
        "newly_right": newly_right[:limit],
    }


def _class_deltas(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recall per class in either build (None where a build lacks the class)."""
    ra = {c["class"]: c["recall"] for c in a}
    rb = {c["class"]: c["recall"] for c in b}
    out = []
    for name in sorted(ra.keys() | rb.keys()):
        x, y = ra.get(name), rb.get(name)
        out.append({"class": name, "a": x, "b": y, "delta": None if x is None or y is None else y - x})
    return out
