"""Side-by-side benchmark of sharing (issue 12): a kiln hub on loopback against `git clone` from
`git daemon` and `dvc pull` from an S3 remote (SeaweedFS), on the same 100,000 small PNGs.

Figures: full clone (time, HTTP requests, passes fsck) beside the anchors; labels-only clone;
a push of a one-label commit (bytes, requests, time); a fetch of 1,000 scattered edits (bytes);
a no-op fetch and push (requests, time); 50 clients fetching at once (errors, p95). Clones are
timed as ``kiln clone`` processes; pushes and fetches as ``Repo.push()``/``Repo.fetch()`` calls
(the transfer, not Python's start-up, which ``noop_*_command_s`` shows for scale). Beside every
figure, the 1-minute load average when it was measured. Prints each figure with its target and
PASS/FAIL, and writes the JSON to ``bench/results/``.

    python bench/bench_hub.py                     # N=100,000, both anchors (DVC: ~20 min more)
    python bench/bench_hub.py --n 10000 --no-dvc  # quick look
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_repo import ENV as REPO_ENV  # noqa: E402
from bench_repo import load, warm  # noqa: E402
from figures import print_figures, save  # noqa: E402
from gen_images import generate  # noqa: E402

KILN = [sys.executable, "-m", "datakiln"]
CLIENTS = 50
FETCHES_PER_CLIENT = 20


def kiln(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stdout) of one kiln command; fails loudly."""
    t = time.perf_counter()
    r = subprocess.run([*KILN, *args], cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"bench: kiln {' '.join(args)} failed in {cwd}:\n{r.stderr[-2000:]}")
    return dt, r.stdout


def kiln_json(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, Any]:
    dt, out = kiln([*args, "--json"], cwd, env)
    return dt, json.loads(out)


def noted(r: dict[str, Any], key: str, value: Any) -> Any:
    r[key] = value
    r.setdefault("load", {})[key] = round(load(), 2)
    return value


class Hub:
    """``kiln hub serve`` on a free port with user alice logged in (``env``)."""

    def __init__(self, work: Path) -> None:
        self.root, cfg = work / "hubroot", work / "cfg"
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(cfg, ignore_errors=True)
        self.env = {**REPO_ENV, "KILN_CONFIG_HOME": str(cfg), "KILN_PROGRESS": "0"}
        _, token = kiln(["hub", "user", "add", "alice", "--root", str(self.root)], work, self.env)
        self.token = token.strip()
        self.proc = subprocess.Popen(
            [*KILN, "hub", "serve", "--root", str(self.root), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().split("at ", 1)[1].split()[0]
        kiln(["login", self.url, "--token", self.token], work, self.env)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        if self.proc.stdout:
            self.proc.stdout.close()


def best(k: int, once: Any) -> tuple[float, Any]:
    """(best seconds, the last result) of ``once()`` -> (seconds, result), k times."""
    runs = [once() for _ in range(k)]
    return min(t for t, _ in runs), runs[-1][1]


def clones(hub: Hub, work: Path, url: str, r: dict[str, Any]) -> tuple[Path, Path]:
    def full() -> tuple[float, Any]:
        shutil.rmtree(work / "full", ignore_errors=True)
        os.sync()
        return kiln_json(["clone", url, "full"], work, hub.env)

    def labels() -> tuple[float, Any]:
        shutil.rmtree(work / "labels", ignore_errors=True)
        os.sync()
        return kiln_json(["clone", "--labels-only", url, "labels"], work, hub.env)

    t, res = best(2, full)
    noted(r, "clone_s", round(t, 3))
    r["clone_requests"], r["clone_bytes"] = res["requests"], res["bytes"]
    _, out = kiln(["fsck"], work / "full", hub.env)
    r["clone_fsck_ok"] = out.strip().endswith("ok")
    t, res = best(2, labels)
    noted(r, "labels_only_clone_s", round(t, 3))
    r["labels_only_clone_bytes"] = res["bytes"]
    return work / "full", work / "labels"


def edits(repo: Path, env: dict[str, str], k: int, seed: int) -> None:
    """Stage ``k`` label edits of random examples (a label each does not have) and commit them."""
    import datakiln

    rp = datakiln.Repo(repo)
    table = rp.table()
    rng = random.Random(seed)
    classes = sorted({str(v) for v in table.cols["label"] if v is not None})
    rows = rng.sample(range(len(table)), k)
    path = repo / f"edits-{seed}.csv"
    lines = ["id,label"]
    for i in rows:
        now = table.cols["label"][i]
        lines.append(f"{table.ids[i]},{rng.choice([c for c in classes if c != now])}")
    path.write_text("\n".join(lines) + "\n")
    kiln(["label", "--file", str(path)], repo, env)
    kiln(["commit", "-m", f"{k} edits"], repo, env)
    path.unlink()


def in_process(hub: Hub, repo: Path, verb: str) -> tuple[float, Any]:
    """(seconds, result) of ``Repo.fetch()`` or ``Repo.push()`` called in this process: the
    transfer itself, without the ~0.2 s a ``kiln`` process spends starting Python."""
    import datakiln

    os.environ["KILN_CONFIG_HOME"] = hub.env["KILN_CONFIG_HOME"]
    rp = datakiln.Repo(repo)
    t = time.perf_counter()
    res = getattr(rp, verb)()
    return time.perf_counter() - t, res


def small_transfers(hub: Hub, writer: Path, reader: Path, r: dict[str, Any]) -> None:
    edits(writer, hub.env, 1, seed=1)
    t, res = in_process(hub, writer, "push")
    noted(r, "one_label_push_s", round(t, 3))
    r["one_label_push_bytes"], r["one_label_push_requests"] = res["bytes"], res["requests"]
    kiln(["pull"], reader, hub.env)
    edits(writer, hub.env, 1000, seed=2)
    kiln(["push"], writer, hub.env)
    t, res = in_process(hub, reader, "fetch")
    noted(r, "fetch_1000_edits_s", round(t, 3))
    r["fetch_1000_edits_bytes"] = res["bytes"]
    kiln(["pull"], reader, hub.env)
    t, res = best(5, lambda: in_process(hub, reader, "fetch"))
    noted(r, "noop_fetch_s", round(t, 3))
    r["noop_fetch_requests"] = res["requests"]
    t, res = best(5, lambda: in_process(hub, reader, "push"))
    noted(r, "noop_push_s", round(t, 3))
    r["noop_push_requests"] = res["requests"]
    # The same as whole commands, for scale: most of it is Python starting.
    noted(r, "noop_fetch_command_s", round(best(3, lambda: kiln_json(["fetch"], reader, hub.env))[0], 3))
    noted(r, "noop_push_command_s", round(best(3, lambda: kiln_json(["push"], reader, hub.env))[0], 3))


def _client(url: str, token: str, have: list[str], start: float, out: Any) -> None:
    """One of the concurrent clients: no-op fetches from the same instant, their latencies."""
    from datakiln.store.remote import Remote

    conn = Remote(url, token=token)
    times, errors = [], 0
    time.sleep(max(0.0, start - time.time()))
    for _ in range(FETCHES_PER_CLIENT):
        t = time.perf_counter()
        try:
            header, stream = conn.fetch(None, have)
            stream.read()
            if header.get("objects"):
                errors += 1  # a no-op fetch must send nothing
        except Exception:
            errors += 1
            conn.close()
        times.append(time.perf_counter() - t)
    conn.close()
    out.put((times, errors))


def concurrent(hub: Hub, url: str, reader: Path, r: dict[str, Any]) -> None:
    import datakiln

    rp = datakiln.Repo(reader)
    have = [rp.resolve("main")]
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    start = time.time() + 2.0  # every client is up and waiting before the first request
    procs = [ctx.Process(target=_client, args=(url, hub.token, have, start, q)) for _ in range(CLIENTS)]
    for p in procs:
        p.start()
    results = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    times = sorted(t for ts, _ in results for t in ts)
    noted(r, "concurrent_p95_ms", round(1000 * times[int(0.95 * (len(times) - 1))], 1))
    r["concurrent_median_ms"] = round(1000 * statistics.median(times), 1)
    r["concurrent_errors"] = sum(e for _, e in results)
    r["concurrent_requests"] = len(times)


def anchors(data: Path, work: Path, r: dict[str, Any], *, git: bool, dvc: bool) -> None:
    from share_anchors import dvc_s3_pull, ensure_dvc, git_daemon_clone

    for sub in ("git", "dvc"):
        shutil.rmtree(work / sub, ignore_errors=True)  # a previous run's copy
    if git:
        g = git_daemon_clone(data, work / "git", repeats=2)
        r["git_clone_s"], r["git_clone_files"] = round(g["clone_s"], 3), g["files"]
        r.setdefault("load", {})["git_clone_s"] = round(min(g["loads"]), 2)
    if dvc:
        d = dvc_s3_pull(data, work / "dvc", ensure_dvc(), repeats=1)
        r["dvc_pull_s"], r["dvc_pull_ms_per_file"] = round(d["pull_s"], 3), round(d["per_file_ms"], 2)
        r.setdefault("load", {})["dvc_pull_s"] = round(min(d["loads"]), 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/kiln-bench-hub"))
    ap.add_argument("--no-git", action="store_true")
    ap.add_argument("--no-dvc", action="store_true")
    a = ap.parse_args()
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"data-{a.n}"
    if not (data / "labels.csv").exists():
        generate(data, a.n)
    warm(data)
    r: dict[str, Any] = {"date": str(date.today()), "n": a.n, "cores": os.cpu_count()}
    hub = Hub(work)
    try:
        src = work / "src"
        shutil.rmtree(src, ignore_errors=True)
        kiln(["init", str(src)], work, hub.env)
        kiln(["import", "--manifest", str(data / "labels.csv")], src, hub.env)
        kiln(["commit", "-m", "import"], src, hub.env)
        kiln(["hub", "create", "alice/bench"], work, hub.env)
        url = f"{hub.url}/alice/bench"
        kiln(["remote", "add", "origin", url], src, hub.env)
        t, res = kiln_json(["push"], src, hub.env)
        noted(r, "first_push_s", round(t, 3))
        full, labels = clones(hub, work, url, r)
        small_transfers(hub, full, labels, r)
        concurrent(hub, url, labels, r)
    finally:
        hub.stop()
    anchors(data, work, r, git=not a.no_git, dvc=not a.no_dvc)
    report(r)
    print(f"\nresults: {save('bench_hub', r)}")
    return 0


def report(r: dict[str, Any]) -> None:
    ld = r["load"]
    print(f"\nN = {r['n']:,} PNGs, {r['cores']} cores; load = 1-minute load average when measured")
    for key in sorted(ld):
        print(f"  {key:28} {r[key]!s:>10}   load {ld[key]}")
    if "git_clone_s" in r:
        print(f"  kiln clone / git clone:      {r['clone_s'] / r['git_clone_s']:.2f}x")
    if "dvc_pull_s" in r:
        print(f"  kiln clone / dvc pull:       {r['clone_s'] / r['dvc_pull_s']:.3f}x")
    rows = [
        ("clone: HTTP requests", r["clone_requests"], "<=", 50),
        ("clone passes fsck (1 = yes)", float(r["clone_fsck_ok"]), ">=", 1),
        ("labels-only clone, s", r["labels_only_clone_s"], "<=", 2.0),
        ("one-label push, bytes sent", r["one_label_push_bytes"], "<=", 2048),
        ("one-label push, requests", r["one_label_push_requests"], "<=", 4),
        ("one-label push, s", r["one_label_push_s"], "<=", 0.3),
        ("fetch of 1,000 scattered edits, bytes", r["fetch_1000_edits_bytes"], "<=", 40 * 1024),
        ("no-op fetch, requests", r["noop_fetch_requests"], "<=", 1),
        ("no-op fetch, s", r["noop_fetch_s"], "<=", 0.1),
        ("no-op push, requests", r["noop_push_requests"], "<=", 1),
        ("no-op push, s", r["noop_push_s"], "<=", 0.1),
        ("50 clients: errors", r["concurrent_errors"], "<=", 0),
        ("50 clients: p95 no-op fetch, ms", r["concurrent_p95_ms"], "<=", 100),
    ]
    if "git_clone_s" in r:
        rows.insert(0, ("full clone / git clone from git daemon", r["clone_s"] / r["git_clone_s"], "<=", 0.5))
    print_figures("issue 12 figures", rows)


if __name__ == "__main__":
    sys.exit(main())
