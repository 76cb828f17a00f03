"""``kiln build``, ``builds``, ``report``, ``compare``, ``predict``, ``package``, ``sweep``.

Thin, like the rest of the CLI: each command calls the library and prints. Nothing here imports
numpy or torch at module level, so ``kiln status`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError, KilnError
from .base import command, out_json, repo, short, when


def _int_or_auto(v: str) -> int | str:
    if v == "auto":
        return v
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{v!r} is not an integer or "auto"') from None


# The short keys' types on the command line; the others take integers.
OVERRIDE_TYPES: dict[str, Any] = {
    "arch": str,
    "width": float,
    "device": str,
    "epochs": _int_or_auto,
    "workers": _int_or_auto,
}


def _spec_args(p: argparse.ArgumentParser) -> None:
    from ..compile.spec import SHORT_KEYS

    p.add_argument("--spec", help="build spec file (default: kiln.toml in the repository, else built-in defaults)")
    for name, key in SHORT_KEYS.items():
        p.add_argument(f"--{name}", type=OVERRIDE_TYPES.get(name, int), help=f"override {key} of the spec")


def _base_spec(a: argparse.Namespace) -> Any:
    """``--spec FILE``, else the repository's kiln.toml, else the defaults."""
    from ..compile.builder import default_spec
    from ..compile.spec import load_spec

    return load_spec(Path(a.C, a.spec)) if a.spec else default_spec(repo(a))


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    from ..compile.spec import SHORT_KEYS

    return {name: getattr(a, name) for name in SHORT_KEYS if getattr(a, name) is not None}


def _spec(a: argparse.Namespace) -> Any:
    overrides = _overrides(a)
    spec = _base_spec(a)
    return spec.with_overrides(**overrides) if overrides else spec


def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rev", nargs="?", default="HEAD", help="commit to build (default: HEAD)")
    _spec_args(p)
    p.add_argument("--no-cache", action="store_true", help="train again even if this build exists")
    p.add_argument(
        "--cold", action="store_true", help="train from scratch: no warm start from a build of an earlier commit"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print id, package, cached and metrics as JSON (progress events: JSON lines on stderr)",
    )


@command(
    "build",
    "kiln build\n  kiln build --cold --workers 2\n  kiln build main~3 --spec other.toml --json\n"
    "  torchrun --nproc-per-node 2 -m datakiln build",
    _build_args,
)
def cmd_build(a: argparse.Namespace) -> None:
    r = repo(a)
    g = r.status()["staged"]
    staged = g["added"] + g["removed"] + g["relabeled"]
    if staged:
        print(
            f"kiln: note: {staged} staged change(s) are not in this build; commit them to build them", file=sys.stderr
        )
    from ..compile import jobs
    from ..compile.builder import build
    from ..progress import json_lines

    spec = _spec(a)
    if a.json:
        json_lines()
    with jobs.recorded(r, a.rev, _overrides(a)) as done:
        res = build(r, a.rev, spec, no_cache=a.no_cache, cold=a.cold, progress=False if a.json else None)
        s = res.summary()
        done(dict(s), res.cached)
    from ..compile.distributed import is_main

    if not is_main():
        return  # under torchrun, rank 0 speaks for the build
    if a.json:
        out_json(s)
        return
    v, t = s["metrics"]["valid"], s["metrics"]["test"]
    how = "cached build" if res.cached else f"built in {s['seconds']:.1f} s"
    warm = f" (warm from {s['warm_from'][:12]}; --cold to train from scratch)" if s["warm_from"] else ""
    print(f"{how} {s['id'][:12]} of commit {short(s['commit'])}: valid {_acc(v)}, test {_acc(t)}{warm}")
    print(f"package: {s['package']}")
    if res.expect is not None:
        print_expectations(res.expect)


def print_expectations(e: dict[str, Any]) -> None:
    """The [expect] results as a table: each check with its measured value, limit and verdict."""
    print(f"\nexpectations on {e['split']} (n={e['n']}): {'PASS' if e['passed'] else 'FAIL'}")
    for c in e["checks"]:
        print(f"  {'ok  ' if c['passed'] else 'FAIL'}  {c['name']:<44} {c['measured']:>10.4f} {c['op']} {c['limit']:g}")


def _acc(m: dict[str, Any]) -> str:
    return "n/a" if m["accuracy"] is None else f"{m['accuracy']:.4f} (n={m['n']})"


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


@command("builds", "kiln builds", _json_arg)
def cmd_builds(a: argparse.Namespace) -> None:
    from ..compile.records import default_build, list_builds

    r = repo(a)
    builds = list_builds(r)
    found = default_build(r, builds)
    default, why = found if found else (None, "")
    rows = []
    for b in builds:
        rec = b.record
        rows.append(
            {
                "id": b.id,
                "commit": rec["lineage"]["commit"],
                "spec": spec_line(rec["spec"], rec.get("resolved")),
                "warm_from": (rec.get("warm") or {}).get("parent"),
                "valid_accuracy": rec["metrics"]["valid"]["accuracy"],
                "test_accuracy": rec["metrics"]["test"]["accuracy"],
                "seconds": rec["seconds"]["total"],
                "created": rec["created"],
                "default": default is not None and b.id == default.id,
            }
        )
    if a.json:
        out_json(rows)
        return
    print(f"  {'build':<12}  {'commit':<10}  {'valid':>6}  {'test':>6}  {'secs':>6}  {'created':<19}  spec")
    for x in rows:
        warm = f"  warm from {x['warm_from'][:8]}" if x["warm_from"] else ""
        print(
            f"{'*' if x['default'] else ' '} {x['id'][:12]}  {short(x['commit'])}  {_f(x['valid_accuracy'])}  "
            f"{_f(x['test_accuracy'])}  {x['seconds']:>6.1f}  {when(int(x['created']))}  {x['spec']}{warm}"
        )
    if default is not None:
        print(f"\n* the default build of report, issues and ui: {why}")


def spec_line(spec: dict[str, Any], resolved: dict[str, Any] | None = None) -> str:
    """The spec in one line: the usual keys, then every other key that changes the weights and
    differs from its default (so two builds that differ print differently). "auto" values show
    what they resolved to, e.g. ``e=auto:6``."""
    from ..compile.spec import NOT_IN_ID, Spec

    got = resolved or {}
    m, t = spec["model"], spec["train"]

    def auto(v: Any, key: str) -> str:
        return f"auto:{got[key]}" if v == "auto" and key in got else str(v)

    line = f"{m['arch']} w={m['width']:g} d={m['depth']} e={auto(t['epochs'], 'epochs')} f={t['folds']} s={t['seed']}"
    shown = {
        ("model", "arch"),
        ("model", "width"),
        ("model", "depth"),
        *(("train", k) for k in ("epochs", "folds", "seed")),
    }
    defaults = Spec().to_dict()
    extra = [
        f"{section}.{k}={auto(v, k) if section != 'input' else v}"
        for section, keys in spec.items()
        for k, v in keys.items()
        if (section, k) not in shown | NOT_IN_ID and defaults.get(section, {}).get(k, v) != v
    ]
    return " ".join([line, *extra])


def _f(v: float | None) -> str:
    return f"{v:>6.4f}" if v is not None else f"{'n/a':>6}"


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", nargs="?", help="build id or prefix (default: the build 'kiln builds' marks with *)")
    _json_arg(p)


@command("report", "kiln report", _report_args)
def cmd_report(a: argparse.Namespace) -> None:
    from ..compile.records import default_build, find_build, list_builds
    from ..compile.report import report

    r = repo(a)
    builds = list_builds(r)
    rep = report(find_build(r, a.build), builds)
    if a.build is None and (found := default_build(r, builds)):
        rep["default_because"] = found[1]
    if a.json:
        out_json(rep)
        return
    m = rep["metrics"]
    print(f"build {rep['id'][:12]} of commit {short(rep['commit'])}  ({spec_line(rep['spec'], rep['resolved'])})")
    if rep.get("default_because"):
        print(f"  (the default build: {rep['default_because']})")
    oos = _acc(m["train_oos"]) if m["train_oos"]["n"] else "n/a (no cross-fitting: train.folds = 0)"
    print(f"accuracy: valid {_acc(m['valid'])}, test {_acc(m['test'])}, train out-of-sample {oos}")
    if rep["warm"]:
        print(f"warm build: started from build {rep['warm']['parent'][:12]} ({rep['warm']['fresh']} new or relabeled)")
    if wc := rep["warm_vs_cold"]:
        print(
            f"warm vs cold (same data and spec): test {_g(wc['test']['warm'])} vs {_g(wc['test']['cold'])}, "
            f"valid {_g(wc['valid']['warm'])} vs {_g(wc['valid']['cold'])}, "
            f"{wc['seconds']['warm']:.1f} s vs {wc['seconds']['cold']:.1f} s"
        )
    pc = rep["per_class"]
    print(f"\nper class ({pc['split']} split):\n  {'class':<16} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>5}")
    for c in pc["classes"]:
        print(f"  {c['class']:<16} {_g(c['precision']):>9} {_g(c['recall']):>7} {_g(c['f1']):>6} {c['support']:>5}")
    _print_confusion(rep["classes"], rep["confusion"])
    print("\nweakest slices (out-of-sample accuracy, 95% interval):")
    for s in rep["slices"][:8]:
        print(f"  {s['slice']:<28} n={s['n']:<6} {s['accuracy']:.3f}  [{s['low']:.3f}, {s['high']:.3f}]")
    if rep["backbone"]:
        bb = rep["backbone"]
        print(f"\nbuilt on {bb['name']} {bb['version']} (sha256 {bb['sha256'][:12]})")
    if rep["expect"]:
        print_expectations(rep["expect"])
    print(f"\npackage: {rep['package']}")


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_confusion(classes: list[str], conf: dict[str, Any]) -> None:
    w = min(12, max(5, *(len(c) for c in classes)))
    names = [c[:w] for c in classes]
    print(f"\nconfusion matrix ({conf['split']} split; rows: given label, columns: predicted):")
    print("  " + " " * (w + 1) + " ".join(f"{n:>{w}}" for n in names))
    for n, row in zip(names, conf["matrix"]):
        print(f"  {n:>{w}} " + " ".join(f"{v:>{w}}" if v else f"{'.':>{w}}" for v in row))


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="the build to compare from")
    p.add_argument("b", help="the build to compare to")
    p.add_argument("--limit", type=int, default=20, help="examples to list of each kind (default: 20)")
    _json_arg(p)


@command(
    "compare",
    "kiln compare 3f2a 9c1b",
    _compare_args,
)
def cmd_compare(a: argparse.Namespace) -> None:
    from ..compile.report import compare

    r = repo(a)
    from ..compile.records import find_build

    c = compare(find_build(r, a.a), find_build(r, a.b), limit=a.limit)
    if a.json:
        out_json(c)
        return
    print(f"{c['a'][:12]} -> {c['b'][:12]}")
    for s, v in c["splits"].items():
        delta = "" if v["delta"] is None else f"  ({v['delta']:+.4f})"
        print(f"  {s:<10} {_g(v['a'])} -> {_g(v['b'])}{delta}")
    moved = [x for x in c["per_class"] if x["delta"]]
    if moved:
        print("recall by class:")
        for x in moved:
            print(f"  {x['class']:<16} {_g(x['a'])} -> {_g(x['b'])}  ({x['delta']:+.3f})")
    print(
        f"{c['newly_wrong_count']} newly wrong, {c['newly_right_count']} newly right of {c['shared_examples']} examples"
    )
    for kind in ("newly_wrong", "newly_right"):
        for x in c[kind]:
            print(f"  {kind.split('_')[1]:<5} {x['id'][:12]}  label {x['label']!r}: {x['a']!r} -> {x['b']!r}")


def _test_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", nargs="?", help="build id or prefix (default: the build 'kiln builds' marks with *)")
    p.add_argument("--spec", help="build spec whose [expect] section to check (default: kiln.toml)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


@command("test", "kiln test 3f2a", _test_args)
def cmd_test(a: argparse.Namespace) -> int:
    from ..compile.expect import check
    from ..compile.records import find_build

    r = repo(a)
    b = find_build(r, a.build)
    expect = _base_spec(a).expect
    if not expect.checks():
        raise InputError("kiln.toml has no [expect] section to check; docs/build.md lists its keys")
    result = check(r, b, expect)
    if a.json:
        out_json(result)
    else:
        print(f"build {b.id[:12]}", end="")
        print_expectations(result)
    return 0 if result["passed"] else 1


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="build id or prefix, package directory, or package archive")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top", type=int, default=1, help="classes to show per image (default: 1)")
    p.add_argument("--json", action="store_true", help="print a JSON array: one object per image with label and probs")


@command(
    "predict",
    "kiln predict 3f2a cat.png dog.jpg --json",
    _predict_args,
)
def cmd_predict(a: argparse.Namespace) -> None:
    from ..compile.records import load_model

    model = load_model(os.path.join(a.C, a.model) if os.path.exists(os.path.join(a.C, a.model)) else a.model, repo=a.C)
    images = [os.path.join(a.C, p) for p in a.images]
    pred = model.predict(images)
    if a.json:
        out_json(
            [
                {"input": path, "label": lab, "probs": dict(zip(pred.classes, map(float, row)))}
                for path, lab, row in zip(a.images, pred.labels, pred.probs)
            ]
        )
        return
    for path, row in zip(a.images, pred.probs):
        top = sorted(range(len(row)), key=lambda k: -row[k])[: max(1, a.top)]
        print(f"{path}  " + "  ".join(f"{pred.classes[k]} {row[k]:.3f}" for k in top))


def _package_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "build",
        nargs="*",
        help="build id or prefix (default: the build 'kiln builds' marks with *); or 'info OWNER/NAME[@RANGE]'",
    )
    p.add_argument("-o", "--output", help="archive to write (default: NAME-VERSION.kiln.zip here)")
    p.add_argument("--hub", help="for 'info': the hub's address (default: $KILN_HUB, the remote, or your one login)")
    p.add_argument("--json", action="store_true", help="for 'info': print JSON")


@command(
    "package",
    "kiln package -o digits.kiln.zip; kiln package info alice/digits-cnn",
    _package_args,
)
def cmd_package(a: argparse.Namespace) -> None:
    import json

    from ..compile.records import find_build
    from ..package import MANIFEST, write_archive

    if a.build[:1] == ["info"]:
        if len(a.build) != 2:
            raise InputError("usage: kiln package info OWNER/NAME[@RANGE]")
        from .registry import package_info

        package_info(a, a.build[1])
        return
    if len(a.build) > 1:
        raise InputError(f"kiln package takes one build, not {len(a.build)}: {' '.join(a.build)}")
    b = find_build(repo(a), a.build[0] if a.build else None)
    manifest = json.loads((b.package / MANIFEST).read_text())
    out = Path(a.C, a.output or f"{manifest['name']}-{manifest['version'].replace('+', '_')}.kiln.zip")
    write_archive(b.package, out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", required=True, help="comma-separated width multipliers, e.g. 0.25,0.5,1,2")
    p.add_argument("rev", nargs="?", default="HEAD", help="commit to build (default: HEAD)")
    p.add_argument("--spec", help="build spec file (default: kiln.toml)")
    p.add_argument("--batch", type=int, default=256, help="batch size for the latency measure (default: 256)")
    p.add_argument("--plot", default="sweep.png", help="where to save the chart (default: sweep.png)")
    _json_arg(p)


@command(
    "sweep",
    "kiln sweep --width 0.25,0.5,1,2",
    _sweep_args,
)
def cmd_sweep(a: argparse.Namespace) -> None:
    from ..compile.sweep import plot, sweep

    try:
        widths = list(dict.fromkeys(float(w) for w in a.width.split(",") if w.strip()))
    except ValueError:
        widths = []
    if not widths:
        raise KilnError(f"--width {a.width!r}: give numbers separated by commas, e.g. 0.25,0.5,1,2")
    if not 1 <= a.batch <= 8192:
        raise KilnError(f"--batch {a.batch}: use a batch size from 1 to 8192")
    res = sweep(repo(a), widths, rev=a.rev, spec=_base_spec(a), batch=a.batch)
    res["plot"] = str(plot(res, Path(a.C, a.plot)))
    if a.json:
        out_json(res)
        return
    print(f"{'width':>6}  {'build':<12}  {'accuracy':>8}  {'ms/batch':>8}  pareto")
    for p in res["points"]:
        print(
            f"{p['width']:>6g}  {p['build'][:12]}  {_g(p['accuracy']):>8}  {p['latency_s'] * 1000:>8.2f}  "
            f"{'*' if p['pareto'] else ''}"
        )
    print(f"chart: {res['plot']}")
