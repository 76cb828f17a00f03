"""``kiln serve``: a model package behind HTTP, on onnxruntime (no torch), with batching.

``serve(model)`` runs uvicorn with ``serve.app`` (``POST /predict``, ``GET /health``,
``GET /metadata``) and a ``serve.batcher.Batcher`` that gives requests arriving together one
onnxruntime call. Binds 127.0.0.1 unless told otherwise. Imported only by ``kiln serve``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .app import Limits, create_app
from .batcher import Batcher

if TYPE_CHECKING:
    from ..package import Model

__all__ = ["Batcher", "Limits", "create_app", "serve"]


def serve(
    model: Model,
    *,
    host: str = "127.0.0.1",
    port: int | None = 8081,
    max_batch: int = 64,
    max_wait: float = 0.002,
    limits: Limits | None = None,
) -> None:
    """Serve ``model`` until Ctrl-C; prints its URL once it accepts connections."""
    import uvicorn

    from ..server import bind, is_loopback

    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    if not is_loopback(host):
        print(f"kiln serve: listening on {host}: anyone who can reach it can use the model", file=sys.stderr)
    limits = limits or Limits()
    # The queue holds at least a few requests' worth of images: a request of max_images must fit.
    batcher = Batcher(model, max_batch=max_batch, max_wait=max_wait, max_queue=max(4096, 4 * limits.max_images))
    app = create_app(model, batcher, limits)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", backlog=2048)
    server = uvicorn.Server(config)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    version = model.manifest.get("version")
    print(
        f"kiln serve: {model.name} {version} at http://{shown}:{real_port}  (POST /predict; Ctrl-C stops)", flush=True
    )
    try:
        server.run(sockets=[sock])
    finally:
        batcher.close()
