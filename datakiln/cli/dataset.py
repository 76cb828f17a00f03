"""``kiln init``, ``import``, ``label``, ``rm``, ``reset``, ``status``, ``commit``, ``log``, ``show``,
``diff``, ``branch``, ``tag``, ``checkout``, ``merge``, ``ls``, ``export``, ``cat``, ``fsck``, ``gc``:
the dataset repository's commands. Thin: each calls ``datakiln.Repo`` and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import BadImage, KilnError
from ..repo import Repo
from ..repo.stage import Side
from ..repo.table import Diff
from .base import command, json_only, no_args, out_json, repo, short, shown, when


def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default=".", help="directory to create the repository in (default: here)")
    p.add_argument("--branch", default="main", help="name of the first branch (default: main)")


@command("init", "kiln init animals", _init_args)
def cmd_init(a: argparse.Namespace) -> None:
    from ..compile.spec import write_default

    r = Repo.init(os.path.join(a.C, a.path), branch=a.branch)
    write_default(r.root)
    print(f"Initialized an empty kiln repository in {r.dir}")


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "folder", nargs="?", help="folder of images, one subfolder per class (top-level files are unlabeled)"
    )
    p.add_argument("--manifest", help="CSV or JSONL with columns path,label[,split][,metadata...]")
    p.add_argument("--sample", choices=["digits"], help="import a sample bundled with datakiln")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="import the good files and report the bad ones (default: import nothing if any file is bad)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes for checking images (default: CPU count, or $KILN_JOBS)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")


@command(
    "import",
    "kiln import ~/photos/animals\n  kiln import --manifest labels.csv\n  kiln import --sample digits",
    _import_args,
)
def cmd_import(a: argparse.Namespace) -> int:
    chosen = [x for x in (a.folder, a.manifest, a.sample) if x]
    if len(chosen) != 1:
        raise KilnError("give exactly one source: a FOLDER, --manifest FILE, or --sample digits")
    r = repo(a)
    kw = {"skip_bad": a.skip_bad, "jobs": a.jobs}
    try:
        if a.sample:
            rep = r.import_sample(a.sample, **kw)
        elif a.manifest:
            rep = r.import_manifest(a.manifest, **kw)
        else:
            rep = r.import_folder(a.folder, **kw)
    except BadImage as e:
        raise BadImage(f"{e}\n'kiln import --skip-bad ...' imports the rest and lists these as skipped") from None
    if a.json:
        out_json(rep.__dict__)
    else:
        print(f"imported {rep.added} example(s) ({rep.new_blobs} new image(s) stored); {rep.present} already present")
        for msg in rep.bad:
            print(f"skipped: {msg}", file=sys.stderr)
        if rep.added:
            print("staged; 'kiln commit -m MESSAGE' records them")
    return 0


# ---- label / rm / reset -----------------------------------------------------------------


def _label_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", nargs="?", help="example id or unique prefix (at least 4 hex digits)")
    p.add_argument("label", nargs="?", help="the new label")
    p.add_argument("--file", help="CSV with header id,label: many edits at once (an empty label unlabels)")
    p.add_argument("--clear", action="store_true", help="make the example unlabeled")
    p.add_argument("--by", help="label source to record (default: human:$KILN_USER or your login)")
    p.add_argument(
        "--new-class", action="store_true", help="allow labels no example has yet (default: refuse them as typos)"
    )


@command(
    "label",
    "kiln label 3f2a9c cat\n  kiln label --file fixes.csv",
    _label_args,
)
def cmd_label(a: argparse.Namespace) -> None:
    r = repo(a)
    if a.file:
        if a.id or a.label:
            raise KilnError("give either ID LABEL or --file FILE, not both")
        ids = r.label_file(a.file, by=a.by, new_class=a.new_class)
        print(f"staged {len(ids)} label edit(s)")
        return
    if not a.id or (a.label is None) == (not a.clear):
        raise KilnError("usage: kiln label ID LABEL, kiln label ID --clear, or kiln label --file FILE")
    eid = r.label(a.id, None if a.clear else a.label, by=a.by, new_class=a.new_class)
    print(f"{eid[:12]} -> {a.label if not a.clear else '(unlabeled)'} (staged)")


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="+", help="example ids or unique prefixes")


@command("rm", "kiln rm 3f2a9c 77b0e1", _rm_args)
def cmd_rm(a: argparse.Namespace) -> None:
    ids = repo(a).rm(a.ids)
    print(f"staged removal of {len(ids)} example(s)")


@command("reset", "kiln reset", no_args)
def cmd_reset(a: argparse.Namespace) -> None:
    repo(a).reset()
    print("staged changes discarded")


# ---- status / commit --------------------------------------------------------------------


@command("status", "kiln status --json", json_only)
def cmd_status(a: argparse.Namespace) -> None:
    r = repo(a)
    s = r.status()
    s["upstream"] = r.ahead_behind()
    if a.json:
        out_json(s)
        return
    print(f"On branch {s['branch']}" if s["branch"] else f"HEAD detached at {short(s['head'])}")
    if s["upstream"]:
        up = s["upstream"]
        where = {(0, 0): "up to date with", (1, 0): "ahead of", (0, 1): "behind", (1, 1): "diverged from"}
        state = where[(int(up["ahead"] > 0), int(up["behind"] > 0))]
        print(
            f"Your branch is {state} {up['upstream']} ({up['ahead']} ahead, {up['behind']} behind; as of the last fetch)"
        )
    if s["head"] is None:
        print("No commits yet")
    st = s["stats"]
    print(f"{st['examples']} examples, {st['labeled']} labeled, {st['examples'] - st['labeled']} unlabeled")
    g = s["staged"]
    if any(g.values()):
        print(
            f"Staged: {g['added']} added, {g['removed']} removed, {g['relabeled']} relabeled  ('kiln diff' shows them)"
        )
    else:
        print("Nothing staged")
    if s["merge"]:
        m = s["merge"]
        print(f"Merging {m['name']} ({short(m['theirs'])}): {len(m['conflicts'])} conflict(s) left")
        for c in m["conflicts"][:20]:
            print(f"  conflict {c['id'][:12]}: ours {_side(c['ours'])}, theirs {_side(c['theirs'])}")


def _side(v: Side | None) -> str:
    return "(removed)" if v is None else repr(v["label"])


def _commit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--message", required=True, help="why the data changed")
    p.add_argument("--author", help="author name (default: $KILN_USER or your login)")


@command("commit", 'kiln commit -m "fix cats labelled dog"', _commit_args)
def cmd_commit(a: argparse.Namespace) -> None:
    r = repo(a)
    cid = r.commit(a.message, author=a.author)
    print(f"[{r.branch_name() or 'detached'} {short(cid)}] {a.message.strip().splitlines()[0]}")


# ---- history ----------------------------------------------------------------------------


def _log_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rev", nargs="?", default="HEAD", help="start here (default: HEAD)")
    p.add_argument("-n", type=int, help="show at most N commits")
    p.add_argument(
        "--json", action="store_true", help="print a JSON array of {id, parents, author, time, message, stats}"
    )


@command("log", "kiln log -n 5\n  kiln log main --json", _log_args)
def cmd_log(a: argparse.Namespace) -> None:
    commits = repo(a).log(a.rev, n=a.n)
    if a.json:
        out_json([c.to_json() for c in commits])
        return
    lines = []
    for c in commits:
        merge = "  (merge)" if len(c.parents) > 1 else ""
        lines.append(f"{short(c.id)}  {when(c.time)}  {shown(c.author):<12} {shown(c.message.splitlines()[0])}{merge}")
    print("\n".join(lines) if lines else "No commits yet")


def print_diff(d: Diff, limit: int = 50) -> None:
    print(f"{len(d['added'])} added, {len(d['removed'])} removed, {len(d['relabeled'])} relabeled")
    for eid in d["added"][:limit]:
        print(f"+ {eid}")
    for eid in d["removed"][:limit]:
        print(f"- {eid}")
    for r in d["relabeled"][:limit]:
        print(f"~ {r['id']}  {r['old']!r} -> {r['new']!r}  ({r['source']})")
    hidden = sum(max(0, len(d[k]) - limit) for k in ("added", "removed", "relabeled"))
    if hidden:
        print(f"... {hidden} more (use --json for all)")


def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rev", nargs="?", default="HEAD", help="commit to show (default: HEAD)")
    p.add_argument("--json", action="store_true", help="print {commit: {...}, diff: {added, removed, relabeled}}")


@command("show", "kiln show HEAD~1", _show_args)
def cmd_show(a: argparse.Namespace) -> None:
    c, d = repo(a).show(a.rev)
    if a.json:
        out_json({"commit": c.to_json(), "diff": d})
        return
    print(f"commit {c.id}")
    if len(c.parents) > 1:
        print("merge  " + " ".join(short(p) for p in c.parents))
    message = "\n    ".join(shown(line) for line in c.message.splitlines())
    print(f"author {shown(c.author)}\ndate   {when(c.time)}\n\n    {message}\n")
    print_diff(d)


def _diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", nargs="?", help="from this revision (default: HEAD)")
    p.add_argument("b", nargs="?", help="to this revision (default: the working table, i.e. staged changes)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print {added: [ids], removed: [ids], relabeled: [{id, old, new, source, time}]}",
    )


@command(
    "diff",
    "kiln diff HEAD~1 HEAD\n  kiln diff --json",
    _diff_args,
)
def cmd_diff(a: argparse.Namespace) -> None:
    d = repo(a).diff(a.a, a.b)
    if a.json:
        out_json(d)
    else:
        print_diff(d)


# ---- branches, tags, checkout, merge ----------------------------------------------------


def _branch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="branch to create (omit to list branches)")
    p.add_argument("rev", nargs="?", default="HEAD", help="where it starts (default: HEAD)")
    p.add_argument("-d", "--delete", action="store_true", help="delete the branch (must be merged)")
    p.add_argument("-D", dest="force_delete", action="store_true", help="delete the branch even if not merged")


@command(
    "branch",
    "kiln branch relabel-birds\n  kiln branch -d relabel-birds",
    _branch_args,
)
def cmd_branch(a: argparse.Namespace) -> None:
    r = repo(a)
    if a.name and (a.delete or a.force_delete):
        r.delete_branch(a.name, force=a.force_delete)
        print(f"deleted branch {a.name}")
    elif a.name:
        cid = r.create_branch(a.name, a.rev)
        print(f"created branch {a.name} at {short(cid)}")
    else:
        current = r.branch_name()
        for name, cid in r.branches().items():
            print(f"{'*' if name == current else ' '} {name:<24} {short(cid)}")


def _tag_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="tag to create (omit to list tags)")
    p.add_argument("rev", nargs="?", default="HEAD", help="commit to tag (default: HEAD)")


@command("tag", "kiln tag v1", _tag_args)
def cmd_tag(a: argparse.Namespace) -> None:
    r = repo(a)
    if a.name:
        print(f"tagged {short(r.tag(a.name, a.rev))} as {a.name}")
    else:
        for name, cid in r.tags().items():
            print(f"{name:<24} {short(cid)}")


def _checkout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="branch name, tag or commit (a tag or commit detaches HEAD)")
    p.add_argument("-b", dest="create", action="store_true", help="create the branch at HEAD first")


@command(
    "checkout",
    "kiln checkout relabel-birds\n  kiln checkout -b new-branch",
    _checkout_args,
)
def cmd_checkout(a: argparse.Namespace) -> None:
    r = repo(a)
    cid = r.checkout(a.target, create=a.create)
    name = r.branch_name()
    print(f"switched to branch {name}" if name else f"HEAD detached at {short(cid)}")


def _merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rev", nargs="?", help="branch or commit to merge into the current branch")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--ours", action="store_true", help="settle conflicts by keeping this branch's labels")
    side.add_argument("--theirs", action="store_true", help="settle conflicts by taking the merged branch's labels")
    side.add_argument("--abort", action="store_true", help="give up the merge in progress")
    p.add_argument("-m", "--message", help="message of the merge commit")
    p.add_argument("--json", action="store_true", help="print {result, commit, conflicts}")


@command(
    "merge",
    "kiln merge relabel-birds\n  kiln merge --theirs        # settle the conflicts of a merge in progress",
    _merge_args,
)
def cmd_merge(a: argparse.Namespace) -> int:
    r = repo(a)
    side = "ours" if a.ours else "theirs" if a.theirs else None
    if a.abort:
        r.abort_merge()
        print("merge aborted")
        return 0
    if a.rev is None:
        if side is None:
            raise KilnError("usage: kiln merge BRANCH, or kiln merge --ours|--theirs|--abort during a merge")
        ids = r.resolve_conflicts(side)
        print(f"settled {len(ids)} conflict(s) with {side}; 'kiln commit -m MESSAGE' finishes the merge")
        return 0
    res = r.merge(a.rev, strategy=side, message=a.message)
    if a.json:
        out_json(res)
    elif res["result"] == "conflicts":
        print(f"{len(res['conflicts'])} conflict(s); the rest of the merge is staged:")
        for c in res["conflicts"][:20]:
            print(f"  {c['id'][:12]}: ours {_side(c['ours'])}, theirs {_side(c['theirs'])}")
        print(
            "Settle with 'kiln merge --ours', 'kiln merge --theirs' or 'kiln label ID LABEL', then 'kiln commit -m MESSAGE'"
        )
    else:
        print(f"{res['result']}: {short(res['commit'])}")
    return 1 if res["result"] == "conflicts" else 0


# ---- reading ------------------------------------------------------------------------------


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rev", help="list this commit instead of the working table")
    p.add_argument("--label", help="only examples with this label")
    p.add_argument("--split", choices=["train", "valid", "test"], help="only this split")
    p.add_argument("--source", help="only labels from this source (prefix: human, model, import)")
    p.add_argument("--unlabeled", action="store_true", help="only unlabeled examples")
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of {id, label, split, source, time, name, blob, format, width, height, meta}",
    )


@command("ls", "kiln ls --label cat --json", _ls_args)
def cmd_ls(a: argparse.Namespace) -> None:
    rows = repo(a).ls(rev=a.rev, label=a.label, split=a.split, source=a.source, unlabeled=a.unlabeled)
    if a.json:
        out_json(rows)
        return
    lines = [
        f"{r['id'][:12]}  {r['split']!s:<5}  {shown(r['label'] if r['label'] is not None else '-'):<16} "
        f"{shown(r['source'] or '-'):<16} {shown(r['name'])}"
        for r in rows
    ]
    print("\n".join(lines))


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="directory to create (must not exist, or be empty)")
    p.add_argument(
        "--format",
        choices=["parquet", "folder"],
        default="parquet",
        help="parquet: one file per split; folder: split/label/id.ext plus manifest.csv",
    )
    p.add_argument("--rev", help="export this commit instead of the working table")


@command("export", "kiln export --format parquet out/", _export_args)
def cmd_export(a: argparse.Namespace) -> None:
    path = repo(a).export(a.out, format=a.format, rev=a.rev)
    print(f"exported to {path}")


def _cat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="example id or unique prefix")
    p.add_argument("--rev", help="read from this commit")


@command("cat", "kiln cat 3f2a9c > cat.png", _cat_args)
def cmd_cat(a: argparse.Namespace) -> None:
    data, _ = repo(a).read_image(a.id, rev=a.rev)
    sys.stdout.buffer.write(data)


# ---- maintenance --------------------------------------------------------------------------


@command("fsck", "kiln fsck", json_only)
def cmd_fsck(a: argparse.Namespace) -> int:
    rep = repo(a).fsck()
    if a.json:
        out_json(rep.to_json())
    else:
        for e in rep.errors:
            print(f"error: {e}")
        print(
            f"checked {rep.objects} objects in {rep.packs} pack(s) and loose; {rep.reachable} reachable, {rep.dangling} dangling, {rep.temp_files} temp file(s)"
        )
        if rep.promised:
            print(f"{rep.promised} image(s) not here yet, promised by the remote of this labels-only clone")
        print("ok" if rep.ok else f"{len(rep.errors)} error(s)")
    return 0 if rep.ok else 1


def _gc_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prune", default="2w", help="drop unreachable objects older than this: now, 30m, 12h, 2w (default: 2w)"
    )


@command("gc", "kiln gc --prune now", _gc_args)
def cmd_gc(a: argparse.Namespace) -> None:
    from ..compile.jobs import prune_jobs
    from ..compile.records import prune_leftovers

    age = parse_age(a.prune)
    r = repo(a)
    rep = r.gc(prune_seconds=age)
    rep.old_jobs = prune_jobs(r, time.time() - age)  # the repository knows no jobs: the compiler prunes
    rep.temp_files += prune_leftovers(r)
    print(
        f"removed {rep.removed_objects} object(s), {rep.freed_bytes:,} bytes; rewrote {rep.packs_rewritten} pack(s); {rep.temp_files} temp file(s); {rep.old_jobs} old build job record(s)"
    )


def parse_age(text: str) -> float:
    if text == "now":
        return 0.0
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise KilnError(
            f"--prune {text!r} is not an age; use now, or a number with s, m, h, d or w (e.g. 2w)"
        ) from None
