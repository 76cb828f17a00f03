"""``kiln ui``: the web app. Thin: ``datakiln.server`` serves a ``Workspace``."""

from __future__ import annotations

import argparse

from .base import command


def _ui_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, help="port (default: the first free one from 8765; 0 for any free port)")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME (a DNS name of this machine); repeatable",
    )


@command(
    "ui",
    "kiln ui\n  kiln -C kiln-demo ui --port 9000",
    _ui_args,
)
def cmd_ui(a: argparse.Namespace) -> None:
    from ..server import serve

    try:
        serve(a.C, host=a.host, port=a.port, allow_hosts=a.allow_host)
    except KeyboardInterrupt:
        pass
