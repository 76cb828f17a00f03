"""Side-by-side benchmark of the dataset repository: kiln against git and DVC on the same data.

Generates N small PNGs (1-2 KB) and a labels CSV, then for each tool: import + commit of the
whole folder, a one-label edit, 1,000 scattered label edits, status with nothing changed, and
log of 1,000 commits; for kiln also the time to read the full label table of old commits, an
import of the same images as a class-per-subfolder folder (``kiln import FOLDER``, beside git
add + commit of that folder), and how long commands take to start (``kiln --help``, ``kiln status``
on an empty repository). Beside every figure: the 1-minute load average when it was measured.
Prints every figure with the issue's target, the ratio to the anchors, and PASS/FAIL, and writes
the JSON to ``bench/results/``.

    python bench/bench_repo.py                     # N=100,000, anchors git and DVC (if found)
    python bench/bench_repo.py --n 10000 --no-dvc  # quick look
    python bench/bench_repo.py --dvc /path/to/dvc  # DVC from its own venv

"New bytes" is the growth of the sum of file sizes in the repository's metadata directory
(``.kiln``, ``.git``, ``.git`` + ``.dvc/cache``), measured after the command returns.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_images import CLASSES, generate  # noqa: E402

HERE = Path(__file__).resolve().parent
KILN = [str(Path(sys.executable).with_name("kiln"))]
ENV = {
    **os.environ,
    "KILN_PROGRESS": "0",
    "KILN_USER": "bench",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@x",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@x",
}

# (key, what, target, unit): targets from issues 2 and 10; a figure is compared with "<=".
TARGETS = {
    "help_s": 0.15,
    "status_empty_s": 0.15,
    "one_label_commit_s": 0.2,
    "one_label_bytes": 2048,
    "scattered_1000_bytes": 32 * 1024,
    "status_s": 0.2,
    "log_1000_s": 0.5,
    "table_read_worst_s": 1.0,
}


def run(cmd: list[str], cwd: Path, *, out: Any = subprocess.DEVNULL) -> float:
    """Wall seconds of one command; fails loudly, because a benchmark of a failing command lies."""
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=ENV, stdout=out, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed in {cwd}:\n{r.stderr[-2000:]}")
    return dt


def best_of(k: int, cmd: list[str], cwd: Path) -> float:
    return min(run(cmd, cwd) for _ in range(k))


def warm(data: Path) -> None:
    """Read every file of the dataset once, so each tool finds it in the page cache: the first
    tool timed must not pay for a cold disk the others do not (a 1.6x difference seen here)."""
    for root, _, files in os.walk(data):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def load() -> float:
    """The 1-minute load average now: a figure measured beside another heavy job is not a figure."""
    return os.getloadavg()[0]


def noted(r: dict[str, Any], key: str, value: float) -> float:
    """Store a figure with the load average at the moment it was measured."""
    r[key] = value
    r.setdefault("load", {})[key] = load()
    return value


def class_folders(data: Path, manifest: Path) -> Path:
    """The same images as ``<label>/<file>`` folders, hard links (no copies): what ``kiln import
    FOLDER`` and ``git add`` of a class-per-subfolder dataset read."""
    folders = data / "by-class"
    stamp = data / ".complete-by-class"
    if not stamp.exists():
        shutil.rmtree(folders, ignore_errors=True)
        for path, label in read_rows(manifest):
            dest = folders / label / Path(path).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(data / path, dest)
        stamp.touch()
    return folders


def size(*dirs: Path) -> int:
    """Bytes of every file under ``dirs``, except kiln's disposable ``cache/`` (pixels, thumbnails,
    state indexes: rebuilt when missing, like git's index file, which git rewrites whole)."""
    total = 0
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            if d.name == ".kiln" and root == str(d):
                subdirs[:] = [x for x in subdirs if x != "cache"]
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except FileNotFoundError:
                    pass
    return total


# ---- the data and the edits every tool makes -------------------------------------------------
def dataset(data: Path, n: int) -> Path:
    manifest = data / "labels.csv"
    stamp = data / f".complete-{n}"
    if not stamp.exists():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        print(f"generating {n:,} PNGs in {data} ...", flush=True)
        generate(data, n)
        stamp.touch()
    return manifest


def read_rows(manifest: Path) -> list[list[str]]:
    with open(manifest, newline="") as f:
        return list(csv.reader(f))[1:]


def write_rows(manifest: Path, rows: list[list[str]], header: tuple[str, str] = ("path", "label")) -> None:
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def pick_edits(rows: list[list[str]], k: int, seed: int) -> dict[int, str]:
    """k scattered rows, each given a different class than it has."""
    rng = random.Random(seed)
    picks = rng.sample(range(len(rows)), k)
    return {i: CLASSES[(CLASSES.index(rows[i][1]) + 1 + rng.randrange(len(CLASSES) - 1)) % len(CLASSES)] for i in picks}


# ---- anchors: git and DVC ------------------------------------------------------------------
def bench_git(work: Path, data: Path, edits1: dict[int, str], edits1000: dict[int, str]) -> dict[str, Any]:
    repo = work / "git"
    shutil.copytree(data, repo, ignore=shutil.ignore_patterns(".complete-*", "by-class"))
    git = ["git", "-c", "gc.auto=0", "-c", "core.quotepath=off"]
    run([*git, "init", "-q"], repo)
    r: dict[str, Any] = {}
    noted(r, "import_commit_s", run([*git, "add", "-A"], repo) + run([*git, "commit", "-qm", "import"], repo))
    folders = work / "git-folder"
    shutil.copytree(class_folders(data, data / "labels.csv"), folders, copy_function=os.link)
    run([*git, "init", "-q"], folders)
    noted(r, "folder_import_commit_s", run([*git, "add", "-A"], folders) + run([*git, "commit", "-qm", "i"], folders))
    shutil.rmtree(folders)
    for k, v in _edit_commits(
        repo, [repo / ".git"], edits1, edits1000, lambda: [[*git, "commit", "-qam", "edit"]]
    ).items():
        noted(r, k, v)
    noted(r, "status_s", best_of(3, [*git, "status", "--porcelain"], repo))
    # 1,000 commits with plumbing (commit-tree), so making them does not dominate the bench.
    tree = subprocess.run([*git, "rev-parse", "HEAD^{tree}"], cwd=repo, capture_output=True, text=True).stdout.strip()
    head = subprocess.run([*git, "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    for i in range(1000):
        head = subprocess.run(
            [*git, "commit-tree", tree, "-p", head, "-m", f"edit {i}"],
            cwd=repo,
            env=ENV,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    run([*git, "update-ref", "HEAD", head], repo)
    noted(r, "log_1000_s", best_of(3, [*git, "--no-pager", "log", "-n", "1000"], repo))
    return r


def bench_dvc(work: Path, data: Path, dvc: str, edits1: dict[int, str], edits1000: dict[int, str]) -> dict[str, Any]:
    """DVC as its docs teach: ``dvc add`` the data folder, commit the .dvc file to git."""
    repo = work / "dvc"
    repo.mkdir()
    shutil.copytree(data, repo / "data", ignore=shutil.ignore_patterns(".complete-*", "by-class"))
    git = ["git", "-c", "gc.auto=0"]
    run([*git, "init", "-q"], repo)
    run([dvc, "init", "-q"], repo)
    run([dvc, "config", "core.autostage", "true"], repo)
    run([*git, "commit", "-qm", "dvc init"], repo)
    r: dict[str, Any] = {}
    noted(r, "import_commit_s", run([dvc, "add", "-q", "data"], repo) + run([*git, "commit", "-qm", "import"], repo))
    edits = _edit_commits(
        repo / "data",
        [repo / ".git", repo / ".dvc" / "cache"],
        edits1,
        edits1000,
        lambda: [[dvc, "add", "-q", str(repo / "data")], [*git, "-C", str(repo), "commit", "-qam", "edit"]],
    )
    for k, v in edits.items():
        noted(r, k, v)
    noted(r, "status_s", best_of(3, [dvc, "status", "-q"], repo))
    return r


def _edit_commits(
    root: Path, meta: list[Path], edits1: dict[int, str], edits1000: dict[int, str], commit_cmds: Any
) -> dict[str, float]:
    r: dict[str, float] = {}
    manifest = root / "labels.csv"
    for key, edits in (("one_label", edits1), ("scattered_1000", edits1000)):
        rows = read_rows(manifest)
        for i, lab in edits.items():
            rows[i][1] = lab
        write_rows(manifest, rows)
        before = size(*meta)
        r[f"{key}_commit_s"] = sum(run(c, root) for c in commit_cmds())
        r[f"{key}_bytes"] = size(*meta) - before
    return r


# ---- kiln ----------------------------------------------------------------------------------
def bench_kiln(work: Path, manifest: Path, edits1: dict[int, str], edits1000: dict[int, str]) -> dict[str, Any]:
    from datakiln import Repo

    repo = work / "kiln"
    run([*KILN, "init", str(repo)], work)
    r: dict[str, Any] = {}
    noted(r, "help_s", best_of(5, [*KILN, "--help"], work))
    noted(r, "status_empty_s", best_of(5, [*KILN, "status"], repo))
    r["import_s"] = run([*KILN, "import", "--manifest", str(manifest)], repo)
    noted(r, "import_commit_s", r["import_s"] + run([*KILN, "commit", "-m", "import"], repo))
    folder_repo = work / "kiln-folder"
    run([*KILN, "init", str(folder_repo)], work)
    folders = class_folders(manifest.parent, manifest)
    noted(
        r,
        "folder_import_commit_s",
        run([*KILN, "import", str(folders)], folder_repo) + run([*KILN, "commit", "-m", "import"], folder_repo),
    )
    shutil.rmtree(folder_repo)

    t = Repo(repo).table()
    by_name = {name: eid for name, eid in zip(t.cols["name"], t.ids)}
    rows = read_rows(manifest)
    meta = repo / ".kiln"
    for key, edits in (("one_label", edits1), ("scattered_1000", edits1000)):
        fixes = work / f"{key}.csv"
        write_rows(fixes, [[by_name[rows[i][0]], lab] for i, lab in edits.items()], header=("id", "label"))
        before = size(meta)
        r[f"{key}_label_s"] = run([*KILN, "label", "--file", str(fixes)], repo)
        noted(r, f"{key}_commit_s", run([*KILN, "commit", "-m", f"edit {key}"], repo))
        noted(r, f"{key}_bytes", size(meta) - before)
        if key == "one_label":
            # The one-label figure is for 'kiln label ID LABEL' typed by hand: time that too.
            i, lab = next(iter(edits1.items()))
            eid = by_name[rows[i][0]]
            before = size(meta)
            label = CLASSES[(CLASSES.index(lab) + 1) % 10]
            noted(r, "one_label_cli_label_s", run([*KILN, "label", eid[:8], label], repo))
            r["one_label_cli_commit_s"] = run([*KILN, "commit", "-m", "one more"], repo)
            r["one_label_cli_bytes"] = size(meta) - before
            # The next edit after a commit: HEAD's state index is derived from the parent's.
            other = by_name[rows[(i + 1) % len(rows)][0]]
            noted(r, "label_after_commit_s", run([*KILN, "label", other[:8], label], repo))
            noted(r, "label_again_s", run([*KILN, "label", other[:8], lab], repo))
            run([*KILN, "reset"], repo)
    noted(r, "status_s", best_of(3, [*KILN, "status"], repo))

    # 1,000 commits of one scattered edit each, through the API (the same code path as the CLI).
    api = Repo(repo)
    rng = random.Random(7)
    ids = api.table().ids
    t0 = time.perf_counter()
    for i in range(1000):
        api.commit(f"edit {i}", edits={rng.choice(ids): CLASSES[rng.randrange(10)]})
    r["commit_api_per_s"] = 1000 / (time.perf_counter() - t0)
    noted(r, "log_1000_s", best_of(3, [*KILN, "log", "-n", "1000"], repo))
    r["log_1000_json_s"] = best_of(3, [*KILN, "log", "-n", "1000", "--json"], repo)
    for k, v in _table_reads(repo).items():
        noted(r, k, v)
    r["repo_bytes"] = size(meta)
    r["cache_bytes"] = size(meta / "cache")
    return r


def _table_reads(repo: Path) -> dict[str, float]:
    """Full label table of commits HEAD~0 .. HEAD~999, each from a cold Repo (no cached segments)."""
    from datakiln import Repo

    worst, total, k = 0.0, 0.0, 0
    for back in [*range(0, 1000, 50), 999]:
        t = time.perf_counter()
        r = Repo(repo)
        table = r.table_at(r.resolve(f"HEAD~{back}"))
        assert len(table) > 0
        dt = time.perf_counter() - t
        worst, total, k = max(worst, dt), total + dt, k + 1
    # And once through the CLI, process start and JSON included.
    cli = run([*KILN, "ls", "--json", "--rev", "HEAD~999"], repo)
    return {"table_read_worst_s": worst, "table_read_mean_s": total / k, "ls_json_old_commit_s": cli}


# ---- report --------------------------------------------------------------------------------
ROWS = [
    ("import_commit_s", "import + commit of N images (s)"),
    ("folder_import_commit_s", "import + commit of a class-folder tree (s)"),
    ("one_label_commit_s", "commit of a one-label edit (s)"),
    ("one_label_bytes", "new bytes, one-label edit"),
    ("scattered_1000_commit_s", "commit of 1,000 scattered edits (s)"),
    ("scattered_1000_bytes", "new bytes, 1,000 scattered edits"),
    ("status_s", "status, nothing changed (s)"),
    ("log_1000_s", "log of 1,000 commits (s)"),
    ("table_read_worst_s", "full table of any of last 1,000 commits (s, worst)"),
    ("one_label_cli_label_s", "kiln label ID LABEL, command (s)"),
    ("label_after_commit_s", "kiln label, first after a commit (s)"),
    ("help_s", "kiln --help (s)"),
    ("status_empty_s", "kiln status, empty repository (s)"),
]


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def report(res: dict[str, dict[str, Any]]) -> bool:
    kiln = res["kiln"]
    anchors = [a for a in ("git", "dvc") if a in res]
    head = f"{'figure':52} {'kiln':>10} " + " ".join(f"{a:>10}" for a in anchors)
    head += " " + " ".join(f"{'kiln/' + a:>9}" for a in anchors) + f" {'target':>9}  ok    load (kiln/anchors)"
    print(head)
    ok_all = True
    for key, what in ROWS:
        k = kiln.get(key)
        vals = [res[a].get(key) for a in anchors]
        ratios = [f"{k / v:9.3f}" if (k is not None and v) else f"{'-':>9}" for v in vals]
        target: float | None = TARGETS.get(key)
        if key in ("import_commit_s", "folder_import_commit_s") and "git" in res:
            target = 0.5 * res["git"][key]  # at most half of git add + git commit
        ok = "" if target is None or k is None else ("PASS" if k <= target else "FAIL")
        ok_all &= ok != "FAIL"
        loads = "/".join(f"{res[t]['load'][key]:.2f}" for t in ("kiln", *anchors) if key in res[t].get("load", {}))
        print(
            f"{what:52} {fmt(k):>10} "
            + " ".join(f"{fmt(v):>10}" for v in vals)
            + " "
            + " ".join(ratios)
            + f" {fmt(target):>9}  {ok:4}  {loads}"
        )
    extra = [
        "import_s",
        "one_label_label_s",
        "one_label_cli_label_s",
        "one_label_cli_commit_s",
        "one_label_cli_bytes",
        "scattered_1000_label_s",
        "log_1000_json_s",
        "table_read_mean_s",
        "ls_json_old_commit_s",
        "commit_api_per_s",
        "repo_bytes",
        "cache_bytes",
    ]
    print("kiln detail: " + ", ".join(f"{k}={fmt(kiln[k])}" for k in extra if k in kiln))
    return ok_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="number of images (default 100,000)")
    ap.add_argument("--data", type=Path, help="where to generate (and reuse) the images (default: a temp dir)")
    ap.add_argument("--work", type=Path, help="scratch directory for the repositories (deleted first)")
    ap.add_argument("--dvc", default=shutil.which("dvc"), help="dvc executable (default: on PATH)")
    ap.add_argument("--no-dvc", action="store_true", help="skip the DVC anchor")
    ap.add_argument("--no-git", action="store_true", help="skip the git anchor")
    args = ap.parse_args()

    base = Path(os.environ.get("TMPDIR", "/tmp"))
    data = args.data or base / f"kiln-bench-data-{args.n}"
    work = args.work or base / "kiln-bench-work"
    manifest = dataset(data, args.n)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    class_folders(data, manifest)
    warm(data)
    rows = read_rows(manifest)
    edits1 = pick_edits(rows, 1, seed=1)
    edits1000 = pick_edits(rows, 1000, seed=2)
    res: dict[str, dict[str, Any]] = {}
    print("kiln ...", flush=True)
    res["kiln"] = bench_kiln(work, manifest, edits1, edits1000)
    if not args.no_git:
        print("git ...", flush=True)
        res["git"] = bench_git(work, data, edits1, edits1000)
    if not args.no_dvc:
        if not args.dvc:
            print("dvc not found: pass --dvc PATH or --no-dvc", file=sys.stderr)
        else:
            print("dvc ...", flush=True)
            res["dvc"] = bench_dvc(work, data, args.dvc, edits1, edits1000)
    print(f"\nN = {args.n:,} PNGs, {date.today()}, {os.cpu_count()} cores, load average now {load():.2f}")
    ok = report(res)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"repo-{args.n}-{date.today()}.json"
    path.write_text(json.dumps({"n": args.n, "date": str(date.today()), "results": res}, indent=1))
    print(f"results: {path}")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
