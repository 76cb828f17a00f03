"""``kiln demo``: the newcomer's tour, run as the real commands it prints: import the digits
sample, relabel on a branch, commit, diff, then build a model of main, print its report and the
sample's suspected label errors.

Each step is printed as the ``kiln`` command a user would type, then run through the same CLI
entry point, so the demo can never show something the commands do not do.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError
from ..repo import Repo
from .base import command

# Two sample examples to relabel (digits/0005.png and digits/0011.png); their ids are stable
# because the sample's bytes and names are.
RELABEL = (("digits/0005.png", "8"), ("digits/0011.png", "7"))


def steps(path: str, ids: dict[str, str] | None) -> list[list[str]]:
    if ids is None:
        return [
            ["init", path],
            ["import", "--sample", "digits"],
            ["status"],
            ["commit", "-m", "import the digits sample"],
        ]
    label_steps = [["label", ids[name][:8], label] for name, label in RELABEL]
    # The relabelling happens on a branch, so main keeps the sample unchanged: the label errors
    # 'kiln issues' shows at the end are the sample's own, not ones the demo planted.
    return [
        ["checkout", "-b", "relabel"],
        *label_steps,
        ["diff"],
        ["commit", "-m", "relabel two ambiguous digits"],
        ["log"],
        ["diff", "HEAD~1", "HEAD"],
        ["checkout", "main"],
        ["build"],
        ["report"],
        ["issues", "-n", "5"],
    ]


def run(path: str, main: Callable[[Sequence[str]], int]) -> int:
    target = Path(path)
    if target.exists():
        raise InputError(f"{path} already exists; remove it or run 'kiln demo OTHER_DIR'")
    for stage in (None, "ids"):
        ids = None
        if stage:
            ids = {str(r["name"]): r["id"] for r in Repo(path).ls()}
        for args in steps(path, ids):
            print(f"\n$ kiln {' '.join(shlex.quote(a) for a in args)}", flush=True)
            full = list(args) if args[0] == "init" else ["-C", path, *args]
            code = main(full)
            if code:
                return code
    print(
        f"\nYour dataset repository is in {path}/ and its first model in {path}/.kiln/builds/. Try:\n"
        f"  cd {path} && kiln outliers && kiln slices && kiln build --width 0.5 && kiln builds",
        flush=True,
    )
    return 0


def share(path: str, main: Callable[[Sequence[str]], int]) -> int:
    """The tour's sharing part: serve a hub beside the demo (``PATH-hub``), push both branches,
    clone it labels-only (``PATH-clone``) and open a change request from the relabelling."""
    root, clone = f"{path}-hub", f"{path}-clone"
    for p in (root, clone):
        if Path(p).exists():
            raise InputError(f"{p} already exists; remove it or run 'kiln demo --hub OTHER_DIR'")
    buf = io.StringIO()
    print(f"\n$ kiln hub user add demo --root {root}", flush=True)
    with contextlib.redirect_stdout(buf):
        code = main(["hub", "user", "add", "demo", "--root", root])
    if code:
        return code
    token = buf.getvalue().strip()
    print(token, flush=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "datakiln", "hub", "serve", "--root", root, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "http://" not in line:
            raise InputError(f"the demo's hub did not start: {line.strip()}")
        url = line.split("at ", 1)[1].split()[0]
        print(f"\n$ kiln hub serve --root {root} --port 0 &    # {url}", flush=True)
        print("$ export KILN_TOKEN=<the token above>    # or: kiln login URL", flush=True)
        os.environ["KILN_TOKEN"] = token
        repo_url = f"{url}/demo/digits"
        for args in (
            ["hub", "create", "demo/digits", "--hub", url],
            ["-C", path, "remote", "add", "origin", repo_url],
            ["-C", path, "push", "origin", "main"],
            ["-C", path, "push", "origin", "relabel"],
            ["clone", "--labels-only", repo_url, clone],
            ["-C", clone, "request", "open", "--from", "relabel", "--to", "main", "-m", "relabel two ambiguous digits"],
        ):
            print(f"\n$ kiln {' '.join(shlex.quote(a) for a in args)}", flush=True)
            code = main(args)
            if code:
                return code
    finally:
        server.terminate()
        server.wait(timeout=20)
        if server.stdout:
            server.stdout.close()
    print(
        f"\nThe hub is stopped. 'kiln hub serve --root {root}' serves it again at http://127.0.0.1:8900: "
        "open /demo/digits/requests/1 there, sign in with the token above, and merge the request.",
        flush=True,
    )
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default="kiln-demo", help="directory to create (default: kiln-demo)")
    p.add_argument(
        "--hub",
        action="store_true",
        help="then share it: serve a hub in PATH-hub, push, clone labels-only into PATH-clone, open a change request",
    )


@command("demo", "kiln demo\n  kiln demo --hub", _demo_args)
def cmd_demo(a: argparse.Namespace) -> int:
    # The tour runs each step through the entry point that started it (``a.main``), so it shows
    # exactly what the typed commands do.
    path = os.path.normpath(os.path.join(a.C, a.path))
    code = run(path, a.main)
    return share(path, a.main) if a.hub and not code else code
