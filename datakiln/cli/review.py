"""``kiln issues``, ``outliers``, ``slices``, ``seed``, ``queue``, ``accept``: thin, over ``datakiln.review``."""

from __future__ import annotations

import argparse
import sys

from ..errors import KilnError
from ..repo import Repo
from .base import command, out_json, repo, short


def _note_stale(r: Repo, build: str | None) -> None:
    """Say so when the build predates HEAD: examples added since have no predictions."""
    from ..compile.records import find_build, list_builds

    if not list_builds(r):
        return
    b = find_build(r, build)
    head = r.head()[1]
    if b.record["lineage"]["commit"] != head:
        print(
            f"kiln: note: build {b.id[:12]} is of commit {short(b.record['lineage']['commit'])}, HEAD is {short(head)}; "
            "examples added since are not judged ('kiln build' updates it)",
            file=sys.stderr,
        )
    if not b.record.get("training", {}).get("oos"):
        print(
            f"kiln: note: build {b.id[:12]} has no cross-fitting (train.folds = 0): its train examples are judged "
            "in-sample, by a model that trained on them, so mislabels hide; build with train.folds >= 2",
            file=sys.stderr,
        )


def _build_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", nargs="?", help="build id or prefix (default: the build 'kiln builds' marks with *)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _issues_args(p: argparse.ArgumentParser) -> None:
    _build_json(p)
    p.add_argument("-n", "--top", type=int, default=20, help="rows to print (default: 20; --json prints all)")
    p.add_argument("--all", action="store_true", help="also show examples a reviewer kept ('kiln keep')")


@command(
    "issues",
    "kiln issues\n  kiln issues --json",
    _issues_args,
)
def cmd_issues(a: argparse.Namespace) -> None:
    from ..review import label_issues

    if a.top < 1:
        raise KilnError(f"-n {a.top}: show at least one row")
    r = repo(a)
    _note_stale(r, a.build)
    rows = label_issues(r, a.build, include_kept=a.all)
    if a.json:
        out_json([{k: x[k] for k in ("id", "given", "suggested", "score", "rank")} for x in rows])
        return
    print(f"{len(rows)} suspected label error(s); score = the model's probability for the given label")
    print(f"{'rank':>4}  {'id':<12}  {'given':<14} {'suggested':<14} {'score':>6}")
    for x in rows[: a.top]:
        print(f"{x['rank']:>4}  {x['id'][:12]}  {x['given']:<14} {x['suggested']:<14} {x['score']:>6.3f}")
    if len(rows) > a.top:
        print(f"... and {len(rows) - a.top} more (-n N, or --json)")
    if rows:
        print(
            "accept a suggestion with 'kiln accept ID', keep the given label with 'kiln keep ID', "
            "or set it with 'kiln label ID LABEL'; then commit"
        )


def _outliers_args(p: argparse.ArgumentParser) -> None:
    _build_json(p)
    p.add_argument("-n", "--top", type=int, default=20, help="outliers and near-duplicate pairs to list (default: 20)")


@command(
    "outliers",
    "kiln outliers --json",
    _outliers_args,
)
def cmd_outliers(a: argparse.Namespace) -> None:
    from ..review import find_outliers

    r = repo(a)
    _note_stale(r, a.build)
    if a.top < 1:
        raise KilnError(f"-n {a.top}: show at least one row")
    res = find_outliers(r, a.build, top=a.top)
    if a.json:
        out_json(res)
        return
    shown = len(res["outliers"])
    print(
        f"{res['outliers_total']} outlier(s) (distance to the class centre over the class's median, above 2)"
        + (f"; the {shown} most unusual:" if shown < res["outliers_total"] else ":")
    )
    for o in res["outliers"]:
        print(f"  {o['id'][:12]}  label {o['label']!r:<12} score {o['score']:.2f}")
    print(f"{len(res['exact_duplicates'])} group(s) of identical images:")
    for g in res["exact_duplicates"][: a.top]:
        flag = "  (different labels)" if g["conflict"] else ""
        print("  " + " ".join(e[:12] for e in g["ids"]) + flag)
    total, pairs = res["near_duplicates_total"], res["near_duplicates"]
    more = f"; {len(pairs)} shown, conflicting labels first" if len(pairs) < total else ""
    print(f"{total} near-duplicate pair(s) (pixel correlation >= 0.98){more}:")
    for d in pairs:
        flag = "  (different labels)" if d["conflict"] else ""
        print(f"  {d['a'][:12]} ~ {d['b'][:12]}  {d['similarity']:.3f}{flag}")


@command(
    "slices",
    "kiln slices --json",
    _build_json,
)
def cmd_slices(a: argparse.Namespace) -> None:
    from ..review import weak_slices

    r = repo(a)
    _note_stale(r, a.build)
    rows = weak_slices(r, a.build)
    if a.json:
        out_json(rows)
        return
    if not rows:
        print("no slice is significantly less accurate than the rest (one-sided test, Bonferroni, alpha 0.05)")
        return
    print(f"{'slice':<28} {'n':>6} {'accuracy':>9} {'95% interval':>16} {'rest':>6}")
    for s in rows:
        print(
            f"{s['slice']:<28} {s['n']:>6} {s['accuracy']:>9.3f}   [{s['low']:.3f}, {s['high']:.3f}] "
            f"{s['rest_accuracy']:>6.3f}"
        )


def _seed_args(p: argparse.ArgumentParser) -> None:
    _build_json(p)
    p.add_argument("--min-confidence", type=float, default=0.9, help="least model confidence to seed (default: 0.9)")


@command(
    "seed",
    "kiln seed --min-confidence 0.9",
    _seed_args,
)
def cmd_seed(a: argparse.Namespace) -> None:
    from ..review import seed

    r = repo(a)
    _note_stale(r, a.build)
    rows = seed(r, a.build, min_confidence=a.min_confidence)
    if a.json:
        out_json(rows)
        return
    print(
        f"seeded {len(rows)} label(s) (staged, source model:...); 'kiln accept ID' confirms one, 'kiln commit' records"
    )


def _queue_args(p: argparse.ArgumentParser) -> None:
    _build_json(p)
    p.add_argument("--n", type=int, help="examples to add to the queue (default: 50)")
    from ..insight.active import STRATEGIES

    p.add_argument("--strategy", choices=STRATEGIES, default="auto", help="how to choose (default: auto)")
    p.add_argument("--clear", action="store_true", help="empty the queue (then add --n more, if given)")
    p.add_argument("--show", action="store_true", help="list the queue (examples still waiting for a label)")


@command(
    "queue",
    "kiln queue --n 50\n  kiln queue --strategy margin --json",
    _queue_args,
)
def cmd_queue(a: argparse.Namespace) -> None:
    from ..review import clear_queue, pending, queue, unpredicted

    r = repo(a)
    if a.show:
        ids = pending(r)
        if a.json:
            out_json([{"id": e} for e in ids])
        else:
            print("\n".join(ids) or "the queue is empty")
        return
    if a.clear:
        clear_queue(r)
        if a.n is None:
            print("the queue is empty")
            return
    late = unpredicted(r, a.build)
    if late:
        print(
            f"kiln: note: {late} unlabeled example(s) were added after the build and are not candidates yet; "
            "'kiln build' includes them",
            file=sys.stderr,
        )
    rows = queue(r, a.build, n=50 if a.n is None else a.n, strategy=a.strategy)
    if a.json:
        out_json(rows)
        return
    if not rows:
        print(_why_empty(r, late))
        return
    cold = rows and rows[0]["score"] is None
    how = (
        "cold start: diverse by pixels, no model yet"
        if cold
        else f"{a.strategy}; score = uncertainty, 1 is a coin toss"
    )
    print(f"{len(rows)} example(s) to label next ({how}):")
    for x in rows:
        print(f"  {x['id'][:12]}" + ("" if x["score"] is None else f"  {x['score']:.3f}"))


def _why_empty(r: Repo, late: int) -> str:
    """Why ``kiln queue`` found nothing to add."""
    from ..repo.label_source import undecided
    from ..review import pending

    work = r.table()
    open_ = sum(1 for i in range(len(work)) if undecided(work.cols["label"][i], work.cols["source"][i]))
    queued = len(pending(r))
    if open_ == 0:
        return "nothing to add: every example has a label a person decided ('kiln import' adds unlabeled ones)"
    if queued >= open_ - late:
        return (
            f"nothing to add: the {queued} undecided example(s) the build knows are already in the queue "
            "('kiln queue --show' lists them; label them, or 'kiln queue --clear')"
        )
    return f"nothing to add: the {open_} undecided example(s) have no predictions yet; 'kiln build' first"


def _ids_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="+", help="example ids (or unique prefixes)")


def _accept_args(p: argparse.ArgumentParser) -> None:
    _ids_arg(p)
    p.add_argument("--build", help="build whose suggestions to accept (default: the newest)")


@command(
    "accept",
    "kiln accept 3f2a9c 77b1e0",
    _accept_args,
)
def cmd_accept(a: argparse.Namespace) -> None:
    from ..review import accept

    for x in accept(repo(a), a.ids, a.build):
        print(f"{x['id'][:12]} -> {x['label']} (staged)")


@command(
    "keep",
    "kiln keep 3f2a9c 77b1e0",
    _ids_arg,
)
def cmd_keep(a: argparse.Namespace) -> None:
    from ..review import keep

    for x in keep(repo(a), a.ids):
        print(f"{x['id'][:12]} keeps {x['label']} (staged)")
