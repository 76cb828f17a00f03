"""``kiln hub``: repositories hosted for a team, with accounts, permissions and change requests.

``Hub`` (``hub.hub``) holds the repositories (``hub.storage``) and everything else
(``hub.meta``: users, tokens, roles, change requests); ``hub.protocol`` is the server side of
the transfer protocol whose client is ``datakiln.store.remote``; ``hub.app`` puts it all on
HTTP. Imported only by ``kiln hub serve`` (FastAPI and uvicorn load here, not in the library).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .hub import PUSH_MAX, Hub

__all__ = ["Hub", "serve"]


def serve(root: Path, *, host: str = "127.0.0.1", port: int | None = 8900, push_max: int | None = None) -> None:
    """Serve the hub at ``root`` until Ctrl-C; prints its URL once it accepts connections."""
    import uvicorn

    from ..server import bind, is_loopback
    from ..server.protocol import raise_open_file_limit
    from .app import create_app

    hub = Hub(root, push_max=push_max or PUSH_MAX)
    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    if not is_loopback(host):
        print(
            f"kiln hub: listening on {host}: use a TLS proxy in front of it; tokens travel in headers", file=sys.stderr
        )
    raise_open_file_limit()
    config = uvicorn.Config(create_app(hub), log_level="warning", access_log=False, lifespan="off", backlog=1024)
    server = uvicorn.Server(config)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    print(f"kiln hub: serving {hub.root} at http://{shown}:{real_port}  (Ctrl-C stops)", flush=True)
    server.run(sockets=[sock])
