"""The ``kiln`` command: a thin layer over the library. Every command's logic is in the library.

``COMMANDS`` names each command's module and summary, so the parser lists them all without
importing any: a command's module (and what it imports) loads only when that command runs, which
keeps ``kiln --help`` and ``kiln status`` well under a second.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import KilnError
from ..version import __version__

# name -> (module under datakiln.cli, one-line summary); the order is the order of `kiln --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("dataset", "create an empty dataset repository"),
    "import": ("dataset", "add examples from an image folder, a manifest, or a bundled sample"),
    "label": ("dataset", "stage label edits (one, or many from a CSV)"),
    "rm": ("dataset", "stage the removal of examples"),
    "reset": ("dataset", "discard all staged changes (and an unfinished merge)"),
    "status": ("dataset", "show the branch, counts and staged changes"),
    "commit": ("dataset", "record the staged changes as a new commit"),
    "log": ("dataset", "list commits, newest first"),
    "show": ("dataset", "show a commit and what it changed"),
    "diff": ("dataset", "row-level difference between two commits (or HEAD and the stage)"),
    "branch": ("dataset", "list, create or delete branches"),
    "tag": ("dataset", "list or create tags (names for commits that never move)"),
    "checkout": ("dataset", "switch to a branch (staged changes come along)"),
    "merge": ("dataset", "three-way, row-level merge of a branch into the current one"),
    "ls": ("dataset", "list examples with their labels"),
    "export": ("dataset", "write the dataset as Parquet or as an image folder"),
    "cat": ("dataset", "write an example's image bytes to stdout"),
    "fsck": ("dataset", "verify every object's hash and every link; names what is damaged"),
    "gc": ("dataset", "remove unreachable objects and leftovers of interrupted commands"),
    "remote": ("share", "list, add or remove remotes (names for repositories on a hub)"),
    "clone": ("share", "copy a repository from a hub (--labels-only: images when first needed)"),
    "fetch": ("share", "bring a remote's branches as REMOTE/BRANCH, with only the objects missing here"),
    "pull": ("share", "fetch, then merge the remote's branch into the current one, row by row"),
    "push": ("share", "send a branch to a hub (fast-forward only unless --force)"),
    "request": ("share", "change requests on a hub: open, list, show, comment, approve, merge, close"),
    "login": ("share", "keep a token for a hub (0600, like git credentials)"),
    "logout": ("share", "forget the token for a hub"),
    "hub": ("share", "the hub: serve repositories to a team; users, tokens, create, grant"),
    "demo": ("demo", "a guided tour on the bundled digits sample: import, label, commit, diff, build"),
    "build": ("build", "train a model package from a commit and a build spec (cached)"),
    "builds": ("build", "list builds: id, commit, spec, metrics, time"),
    "report": ("build", "a build's metrics, per-class table, confusion matrix and weakest slices"),
    "compare": ("build", "behaviour diff of two builds: accuracy deltas, examples newly wrong and newly right"),
    "test": (
        "build",
        "check a build against the [expect] section of kiln.toml (accuracy, slices, latency, robustness)",
    ),
    "predict": ("build", "classify image files with a build or package (onnxruntime; no torch)"),
    "package": ("build", "write a build's package as one archive file; 'package info NAME' describes a published one"),
    "keygen": ("registry", "make your ed25519 signing key (kiln publish signs every package with it)"),
    "publish": ("registry", "publish a build's package to a hub as OWNER/NAME at a version (signed, immutable)"),
    "install": ("registry", "install packages by version range into your cache and pin them in kiln.lock"),
    "packages": ("registry", "list the packages on a hub (--installed: in your cache)"),
    "trust": ("registry", "trust a publisher's signing key for the packages you install"),
    "serve": ("serve", "serve a model over HTTP: POST /predict with images (onnxruntime, batched)"),
    "sweep": ("build", "build several widths; table and chart of accuracy against latency"),
    "issues": (
        "review",
        "suspected label errors, most suspect first (confident learning on out-of-sample predictions)",
    ),
    "outliers": ("review", "examples unlike their class, and exact and near-duplicate images"),
    "slices": ("review", "metadata and class slices that do significantly worse than the rest"),
    "seed": ("review", "pre-label unlabeled examples with a build's predictions (source model:BUILD)"),
    "queue": ("review", "choose the next examples to label (uncertain and diverse); adds them to the labelling queue"),
    "accept": ("review", "accept suggestions: confirm seeded labels, take the suggested label of suspected errors"),
    "keep": ("review", "confirm the given labels of suspected label errors; they are no longer flagged"),
    "ui": ("ui", "the web app: gallery, review and labelling queues, changes, history, builds"),
}


def load_command(name: str) -> tuple[str, object, object]:
    """(example, run, setup) of a command, importing its module."""
    from .base import REGISTRY

    importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    return REGISTRY[name]


def parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The ``kiln`` parser; only ``selected``'s module is imported to add its arguments."""
    p = argparse.ArgumentParser(
        prog="kiln",
        description="Version-controlled image datasets and the models built from them: import, label, commit, "
        "branch, merge, build, report, predict.",
        epilog="Run 'kiln COMMAND --help' for a command's options and an example.",
    )
    p.add_argument("--version", action="version", version=f"datakiln {__version__}")
    p.add_argument("-C", default=".", metavar="PATH", help="run as if kiln was started in PATH")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        if name != selected:
            sub.add_parser(name, help=summary, description=summary, add_help=False)
            continue
        example, run, setup = load_command(name)
        sp = sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        setup(sp)  # type: ignore[operator]
        sp.set_defaults(run=run)
    return p


def command_in(argv: Sequence[str]) -> str | None:
    """The command word of ``argv``: the first argument that is not a global option."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "-C":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = command_in(argv)
    if name is not None and name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"; did you mean 'kiln {close[0]}'?" if close else "; 'kiln --help' lists the commands"
        print(f"kiln: {name!r} is not a kiln command{hint}", file=sys.stderr)
        return 2
    p = parser(name)
    args = p.parse_args(argv)
    if not getattr(args, "run", None):
        p.print_help()
        return 2
    if not os.path.isdir(args.C):
        print(f"kiln: -C {args.C}: no such directory; pass an existing folder", file=sys.stderr)
        return 2
    args.main = main  # `kiln demo` runs its steps through this same entry point
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; errors become one ``kiln:`` line, never a traceback."""
    try:
        return int(args.run(args) or 0)
    except KilnError as e:
        print(f"kiln: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kiln: interrupted; nothing was half-written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"kiln: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:  # the last resort: a bug, or damage no check foresaw
        if os.environ.get("KILN_DEBUG"):
            raise
        print(
            f"kiln: unexpected {type(e).__name__}: {e}; if a file is damaged, 'kiln fsck' names it "
            "(KILN_DEBUG=1 shows the traceback for a bug report)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
