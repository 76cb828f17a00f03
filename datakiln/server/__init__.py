"""``kiln ui``: a local web app over the library (FastAPI + uvicorn; imported only by ``kiln ui``)."""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import threading
from pathlib import Path

from ..errors import InputError
from .workspace import Workspace

DEFAULT_PORT = 8765
PORT_TRIES = 20  # without --port, the first free of 8765..8784: room for a few repositories open at once


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket on ``host:port``; with no port, the first free one from DEFAULT_PORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    tries = [port] if port is not None else list(range(DEFAULT_PORT, DEFAULT_PORT + PORT_TRIES))
    for p in tries:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the listening
        # socket says TCP, and without it every response on a kept-alive connection waits ~40 ms
        # for the client's delayed ACK (uvicorn writes headers and body separately).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, p))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE and len(tries) > 1:
                continue
            raise InputError(
                f"cannot listen on {host}:{p} ({e.strerror}); pass --port N, or --port 0 for any"
            ) from None
        sock.listen(128)
        return sock
    raise InputError(f"ports {tries[0]}-{tries[-1]} are all in use; pass --port N, or --port 0 for any free port")


def allowed_hosts(host: str, port: int, extra: list[str]) -> set[str]:
    """The Host headers this server answers: loopback names, the address it listens on, this
    machine's names when it listens on all interfaces, and ``--allow-host`` names. Anything else
    is refused, so a web page that points its own DNS name at this machine cannot read it."""
    names = {"127.0.0.1", "localhost", "[::1]", _url_host(host), *extra}
    if host in ("0.0.0.0", "::", ""):
        names.update({socket.gethostname(), socket.getfqdn()})
        try:
            names.update(_url_host(str(a[4][0])) for a in socket.getaddrinfo(socket.gethostname(), None))
        except OSError:
            pass
    return {f"{n}:{port}" for n in names if n}


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(
    path: str | Path = ".", *, host: str = "127.0.0.1", port: int | None = None, allow_hosts: list[str] | None = None
) -> None:
    """Serve the repository at ``path`` until Ctrl-C; prints the URL once it accepts connections."""
    import uvicorn

    from .app import create_app
    from .protocol import GuardedH11Protocol, raise_open_file_limit

    ws = Workspace(path)
    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    app = create_app(ws, hosts=allowed_hosts(host, real_port, allow_hosts or []))
    if not is_loopback(host):
        print(
            f"kiln ui: warning: listening on {host}, not loopback: anyone who can reach it can read this "
            "repository and, through a page it serves, change it",
            file=sys.stderr,
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else _url_host(host)
    landing = "review" if ws.builds() else "gallery"
    raise_open_file_limit()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http=GuardedH11Protocol)
    server = uvicorn.Server(config)
    # Warm the gallery while the first page loads: it is the one slow read (~0.5 s at 100k).
    threading.Thread(target=ws.gallery_of, daemon=True).start()
    print(f"kiln ui: serving {ws.repo.root} at http://{shown}:{real_port}/{landing}  (Ctrl-C stops)", flush=True)
    server.run(sockets=[sock])
