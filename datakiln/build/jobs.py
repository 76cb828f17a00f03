"""Builds in the background, for ``kiln ui``: each job is a real ``kiln build`` process.

A job lives in ``.kiln/jobs/<job id>/``: ``job.json`` (what was asked, the process id),
``progress.json`` (the trainer's latest progress event, see ``datakiln.progress``), ``out.json``
(``kiln build --json`` on success) and ``err.txt``. A separate process, not a thread, because
training holds two cores for seconds to minutes, torch's imports and threads would weigh on the
server, and Ctrl-C handling belongs to a main thread. The build itself stays atomic (written in
``.kiln/tmp``, renamed into place), so a killed job leaves nothing half-built.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BuildNotFound, InputError, StateError
from ..progress import PROGRESS_FILE_ENV
from ..store.fsutil import atomic_write

if TYPE_CHECKING:
    from ..repo import Repo

JOBS_DIR = "jobs"
# Handles of the processes this process started: poll() reaps them and gives the exit code.
_children: dict[str, subprocess.Popen[bytes]] = {}


def jobs_dir(repo: Repo) -> Path:
    return repo.dir / JOBS_DIR


def start(repo: Repo, rev: str = "HEAD", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start ``kiln build REV [--KEY VALUE ...]``; returns the job's status.

    One build at a time per repository: on 2 cores a second build only slows the first, so while
    one runs its status is returned (with ``already_running``) instead of starting another.
    """
    from .builder import default_spec
    from .spec import SHORT_KEYS

    for job in list_jobs(repo):
        if job["state"] == "running":
            return {**job, "already_running": True}
    overrides = overrides or {}
    unknown = [k for k in overrides if k not in SHORT_KEYS]
    if unknown:
        raise InputError(f"build option {unknown[0]!r} is not one of {', '.join(SHORT_KEYS)}")
    default_spec(repo).with_overrides(**overrides)  # a bad value fails here, by name, not in the job
    cid = repo.resolve(rev)
    jid = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    d = jobs_dir(repo) / jid
    d.mkdir(parents=True)
    flags = [f"--{k}={v}" for k, v in overrides.items()]
    cmd = [sys.executable, "-m", "datakiln", "-C", str(repo.root), "build", cid, "--json", *flags]
    env = {**os.environ, PROGRESS_FILE_ENV: str(d / "progress.json"), "KILN_PROGRESS": "0"}
    with open(d / "out.json", "wb") as out, open(d / "err.txt", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
    _children[jid] = proc
    info = {"id": jid, "rev": rev, "commit": cid, "overrides": overrides, "pid": proc.pid, "started": time.time()}
    atomic_write(d / "job.json", json.dumps(info).encode(), repo.tmp_dir)
    return status(repo, jid)


def status(repo: Repo, jid: str) -> dict[str, Any]:
    """``{id, state (running|done|failed|cancelled), progress, build, error, ...}`` of a job."""
    d = _job_dir(repo, jid)
    try:
        info: dict[str, Any] = json.loads((d / "job.json").read_text())
    except FileNotFoundError:
        # start() writes job.json right after the process starts; a job seen in between is starting.
        return {"id": jid, "state": "running", "progress": None, "build": None, "error": None}
    code = info.get("returncode")
    if code is None:
        code = _exit_code(jid, int(info["pid"]))
        if code is not None and code != "gone":
            info["returncode"] = code
            info["finished"] = time.time()
            atomic_write(d / "job.json", json.dumps(info).encode(), repo.tmp_dir)
    out = _read_json(d / "out.json")
    progress = _read_json(d / "progress.json")
    if code is None:
        state = "running"
    elif isinstance(out, dict) and "id" in out:
        state = "done"  # includes a job whose server died before it could see the exit code
    elif code in (130, -signal.SIGINT):
        state = "cancelled"
    else:
        state = "failed"
    error = None
    if state == "failed":
        err = (d / "err.txt").read_text(errors="replace").strip().splitlines()
        error = err[-1] if err else f"the build process ended with code {code} and said nothing"
    return {
        **info,
        "state": state,
        "progress": progress,
        "build": out.get("id") if isinstance(out, dict) else None,
        "result": out if isinstance(out, dict) else None,
        "error": error,
    }


def cancel(repo: Repo, jid: str) -> dict[str, Any]:
    """Ask a running job to stop (SIGINT: the build stops at its next safe point, keeps nothing)."""
    st = status(repo, jid)
    if st["state"] != "running":
        raise StateError(f"build job {jid} is {st['state']}, not running; nothing to cancel")
    try:
        os.kill(int(st["pid"]), signal.SIGINT)
    except ProcessLookupError:
        pass
    return st


def list_jobs(repo: Repo) -> list[dict[str, Any]]:
    """Every job, newest first."""
    root = jobs_dir(repo)
    if not root.is_dir():
        return []
    return [status(repo, d.name) for d in sorted(root.iterdir(), reverse=True) if d.is_dir()]


def _job_dir(repo: Repo, jid: str) -> Path:
    # Job ids come from URLs: accept only the shape start() makes, so no path escapes.
    ok = len(jid) == 22 and jid[8] == "-" and jid[15] == "-" and all(c.isalnum() or c == "-" for c in jid)
    d = jobs_dir(repo) / jid
    if not ok or not d.is_dir():
        raise BuildNotFound(f"no build job {jid[:40]!r}; the Builds page lists them")
    return d


def _exit_code(jid: str, pid: int) -> int | str | None:
    """The exit code; None while running; "gone" for a process another server started that ended."""
    proc = _children.get(jid)
    if proc is not None:
        return proc.poll()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
