"""What every ``kiln`` command module shares: the registry its commands enter, and small helpers.

A command module registers with ``@command(NAME, EXAMPLE, SETUP)``; its one-line summary lives in
``datakiln.cli.COMMANDS``, so ``kiln --help`` lists every command without importing any of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from collections.abc import Callable
from typing import Any

from ..repo import Repo

Handler = Callable[[argparse.Namespace], int | None]
Setup = Callable[[argparse.ArgumentParser], None]
REGISTRY: dict[str, tuple[str, Handler, Setup]] = {}  # name -> (example, run, setup)


def command(name: str, example: str, setup: Setup) -> Callable[[Handler], Handler]:
    """Register ``kiln NAME``: ``setup`` adds its arguments, the decorated function runs it."""

    def register(run: Handler) -> Handler:
        REGISTRY[name] = (example, run, setup)
        return run

    return register


def no_args(p: argparse.ArgumentParser) -> None:
    """The command takes no options."""


def json_only(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (schema in docs/cli.md)")


def out_json(obj: Any) -> None:
    """Indented for a terminal; compact for pipes (``indent=`` switches json to its slow
    pure-Python encoder, which would triple ``kiln ls --json`` on 100k examples)."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def repo(args: argparse.Namespace) -> Repo:
    return Repo(args.C)


def short(oid: str | None) -> str:
    return oid[:10] if oid else "(none)"


def when(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def shown(text: object) -> str:
    """``text`` safe for a terminal: control and format characters (an escape sequence in an
    author name of an old or foreign commit) are printed as ``\\x1b``, never sent raw."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() or unicodedata.category(c) not in ("Cc", "Cf") else repr(c)[1:-1] for c in s)
