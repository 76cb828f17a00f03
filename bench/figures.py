"""What every bench prints and saves: figures against their targets, and the results JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

Figure = tuple[str, float, str, float]  # (what, value, ">=" or "<=", target)


def print_figures(title: str, rows: list[Figure], width: int = 52) -> bool:
    """Print one line per figure with PASS/FAIL; True when every figure meets its target."""
    print(f"\n{title}")
    print(f"{'figure':{width}} {'value':>9} {'target':>10}  ok")
    ok_all = True
    for what, value, op, target in rows:
        ok = value >= target if op == ">=" else value <= target
        ok_all &= ok
        print(f"{what:{width}} {value:>9.3f} {op + ' ' + format(target, 'g'):>10}  {'PASS' if ok else 'FAIL'}")
    return ok_all


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{result['date']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
