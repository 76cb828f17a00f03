"""Builds as jobs: started in the background for ``kiln ui`` (``python -m datakiln.compile.jobs``,
this module's entry point), or recorded by a ``kiln build`` typed in a terminal.

A job lives in ``.kiln/jobs/<job id>/``: ``job.json`` (what was asked, the process id),
``progress.json`` (the trainer's latest progress event, see ``datakiln.progress``), ``out.json``
(the build's summary, as ``kiln build --json`` prints it, on success) and ``err.txt``. Ids, pids
and paths are never taken from a job's files: the folder's name is its id. A separate process, not a thread, because
training holds two cores for seconds to minutes, torch's imports and threads would weigh on the
server, and Ctrl-C handling belongs to a main thread. The build itself stays atomic (written in
``.kiln/tmp``, renamed into place), so a killed job leaves nothing half-built. The process
shares the server's process group: Ctrl-C on ``kiln ui`` stops a running build too, cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BuildNotFound, InputError, StateError
from ..progress import PROGRESS_FILE_ENV
from ..store.fsutil import atomic_write

if TYPE_CHECKING:
    from ..repo import Repo

JOB_ENV = "KILN_JOB_ID"  # set in the environment of a build process that a job started
STARTING_GRACE = 60.0  # seconds a job may have no process yet before it counts as failed
# Handles of the processes this process started: poll() reaps them and gives the exit code.
_children: dict[str, subprocess.Popen[bytes]] = {}


def jobs_dir(repo: Repo) -> Path:
    return repo.layout.jobs


def start(repo: Repo, rev: str = "HEAD", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start ``kiln build REV [--KEY VALUE ...]``; returns the job's status.

    One build at a time per repository: on 2 cores a second build only slows the first, so while
    one runs its status is returned (with ``already_running``) instead of starting another.
    """
    for job in list_jobs(repo, limit=3):
        if job["state"] == "running":
            return {**job, "already_running": True}
    overrides = _check_overrides(repo, overrides or {})
    cid = repo.resolve(rev)
    jid = _new_id()
    d = jobs_dir(repo) / jid
    d.mkdir(parents=True)
    info: dict[str, Any] = {"id": jid, "rev": rev, "commit": cid, "overrides": overrides, "started": time.time()}
    # job.json exists before the process does: a crash in between leaves a job that status()
    # calls failed, never one that looks like it runs for ever and blocks every later build.
    _save(repo, d, {**info, "pid": None})
    # The compiler's own entry point (below), not the `kiln` command: compile sits under the CLI.
    cmd = [sys.executable, "-m", __name__, str(repo.root), cid, json.dumps(overrides)]
    env = {**os.environ, PROGRESS_FILE_ENV: str(d / "progress.json"), "KILN_PROGRESS": "0", JOB_ENV: jid}
    try:
        with open(d / "out.json", "wb") as out, open(d / "err.txt", "wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
    except OSError as e:
        _save(repo, d, {**info, "pid": None, "end": {"code": None, "error": f"could not start kiln build: {e}"}})
        raise StateError(f"could not start a build process ({e})") from None
    _children[jid] = proc
    _save(repo, d, {**info, "pid": proc.pid, "pid_start": _pid_start(proc.pid)})
    return status(repo, jid)


def _new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@contextmanager
def recorded(repo: Repo, rev: str, overrides: dict[str, Any]) -> Iterator[Callable[[dict[str, Any], bool], None]]:
    """Record the build this process runs (``kiln build`` in a terminal) as a job, so ``kiln ui``
    shows it with its progress and starts no second build beside it. Yields ``done(summary,
    cached)``: a cached build (no work) leaves no record. A process ``start`` launched is already
    a job and records nothing more."""
    if os.environ.get(JOB_ENV) or int(os.environ.get("RANK") or 0) > 0:  # a job already, or a torchrun rank but 0
        yield lambda summary, cached: None
        return
    cid = repo.resolve(rev)  # before the job exists: a bad revision leaves no record behind
    jid = _new_id()
    d = jobs_dir(repo) / jid
    d.mkdir(parents=True)
    pid = os.getpid()
    info = {"id": jid, "rev": rev, "commit": cid, "overrides": overrides, "started": time.time()}
    _save(repo, d, {**info, "pid": pid, "pid_start": _pid_start(pid), "origin": "terminal"})
    before = os.environ.get(PROGRESS_FILE_ENV)
    os.environ[PROGRESS_FILE_ENV] = str(d / "progress.json")

    def done(summary: dict[str, Any], cached: bool) -> None:
        if cached:
            shutil.rmtree(d, ignore_errors=True)
        else:
            atomic_write(d / "out.json", json.dumps(summary).encode(), repo.tmp_dir)

    try:
        yield done
    except KeyboardInterrupt:
        (d / "err.txt").write_text("kiln: interrupted\n")
        raise
    except BaseException as e:
        (d / "err.txt").write_text(f"kiln: {e}\n")
        raise
    finally:
        if before is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = before


def _check_overrides(repo: Repo, overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides, if each names a short key with a value of its type (checked by the spec)."""
    from .builder import default_spec
    from .spec import SHORT_KEYS

    for k, v in overrides.items():
        if k not in SHORT_KEYS:
            raise InputError(f"build option {k!r} is not one of {', '.join(SHORT_KEYS)}")
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise InputError(f"build option {k}={v!r}: give a number (or a name for arch)")
    default_spec(repo).with_overrides(**overrides)  # a bad value fails here, by name, not in the job
    return overrides


def status(repo: Repo, jid: str) -> dict[str, Any]:
    """``{id, state (running|done|failed|cancelled), progress, build, error, ...}`` of a job."""
    d = _job_dir(repo, jid)
    info = _read_json(d / "job.json")
    if not isinstance(info, dict):
        info = {"pid": None, "started": d.stat().st_mtime}
    info["id"] = jid  # the folder's name, never what the file claims
    if "end" not in info and not _alive(jid, info):
        # Known from the process table and the job's files alone, so reading a status writes
        # nothing (a GET in kiln ui changes no file); the exit code is known to the server that
        # started the job.
        info["end"] = {"code": _children[jid].returncode if jid in _children else None}
        info["finished"] = max((f.stat().st_mtime for f in d.iterdir()), default=None)
    out = _read_json(d / "out.json")
    result = out if isinstance(out, dict) and "id" in out else None
    state, error = _state(d, info, result)
    return {
        **info,
        "state": state,
        "progress": _read_json(d / "progress.json"),
        "build": result["id"] if result else None,
        "result": result,
        "error": error,
    }


def _state(d: Path, info: dict[str, Any], result: dict[str, Any] | None) -> tuple[str, str | None]:
    if "end" not in info:
        return "running", None
    if result is not None:
        return "done", None  # also a job whose server died before it saw the exit code
    end = info["end"]
    try:
        err = (d / "err.txt").read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        err = []
    if end.get("code") in (130, -signal.SIGINT) or (err and "interrupted" in err[-1]):
        return "cancelled", None
    if end.get("error"):
        return "failed", str(end["error"])
    return "failed", err[-1] if err else f"the build process ended (code {end.get('code')}) and said nothing"


def _alive(jid: str, info: dict[str, Any]) -> bool:
    """Is the job's process still running? Ours: poll() (which also reaps it). Another server's:
    the pid exists *and* started when the job's did, so a reused pid is not mistaken for it."""
    proc = _children.get(jid)
    if proc is not None:
        return proc.poll() is None
    pid = info.get("pid")
    if pid is None:
        # Between mkdir and Popen of a live server, briefly; after a crash there, for ever.
        started = info.get("started")
        return isinstance(started, int | float) and time.time() - started < STARTING_GRACE
    # A pid from the file must be a real process's, and the one that started when the job did:
    # a forged -1 or 0 (every process, or the group) must never count as running, nor be signalled.
    if type(pid) is not int or pid <= 1 or info.get("pid_start") is None:
        return False
    return _pid_start(pid) == info.get("pid_start")


def _pid_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in (...) may hold spaces


def _save(repo: Repo, d: Path, info: dict[str, Any]) -> None:
    atomic_write(d / "job.json", json.dumps(info).encode(), repo.tmp_dir)


def cancel(repo: Repo, jid: str) -> dict[str, Any]:
    """Ask a running job to stop (SIGINT: the build stops at its next safe point, keeps nothing)."""
    st = status(repo, jid)
    pid = st.get("pid")
    if st["state"] != "running" or type(pid) is not int or pid <= 1:
        raise StateError(f"build job {jid} is {st['state']}, not running; nothing to cancel")
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    return st


def list_jobs(repo: Repo, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` jobs, newest first (job ids sort by start time)."""
    root = jobs_dir(repo)
    if not root.is_dir():
        return []
    return [status(repo, d.name) for d in sorted(root.iterdir(), reverse=True)[:limit] if d.is_dir()]


def _job_dir(repo: Repo, jid: str) -> Path:
    # Job ids come from URLs: accept only the shape start() makes, so no path escapes.
    ok = len(jid) == 22 and jid[8] == "-" and jid[15] == "-" and all(c.isalnum() or c == "-" for c in jid)
    d = jobs_dir(repo) / jid
    if not ok or not d.is_dir():
        raise BuildNotFound(f"no build job {jid[:40]!r}; the Builds page lists them")
    return d


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def prune_jobs(repo: Repo, cutoff: float) -> int:
    """Remove the records of jobs that ended before ``cutoff`` (``kiln gc``); their builds stay."""
    pruned = 0
    for job in list_jobs(repo, limit=10**9):
        finished = job.get("finished")
        if job["state"] != "running" and (finished if isinstance(finished, int | float) else 0) < cutoff:
            shutil.rmtree(_job_dir(repo, job["id"]), ignore_errors=True)  # id: the folder's name
            pruned += 1
    return pruned


def run(argv: list[str]) -> int:
    """The job process: ``python -m datakiln.compile.jobs ROOT COMMIT OVERRIDES_JSON``. Prints the
    build's summary as JSON (``out.json``); an error, or ``interrupted``, goes to ``err.txt``."""
    from ..errors import KilnError
    from ..repo import Repo
    from .builder import build, default_spec

    root, commit, overrides = argv[0], argv[1], json.loads(argv[2])
    try:
        repo = Repo(root)
        result = build(repo, commit, default_spec(repo).with_overrides(**overrides) if overrides else None)
    except KilnError as e:
        print(f"kiln: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kiln: interrupted; nothing was half-written", file=sys.stderr)
        return 130
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
