"""``kiln serve``: a model behind HTTP, thin over ``datakiln.serve``."""

from __future__ import annotations

import argparse
import os

from .base import command


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="OWNER/NAME@RANGE (installed or from the hub), a build id, or a package path")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8081, help="port (default 8081; 0: any free port)")
    p.add_argument("--max-batch", type=int, default=64, help="images in one onnxruntime call (default 64)")
    p.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="how long a lone request waits for company (default 2 ms)"
    )
    p.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body in MiB (default 8)")
    p.add_argument("--max-images", type=int, default=64, help="images in one request (default 64)")
    p.add_argument(
        "--max-inflight", type=int, default=256, help="requests answered at once; more get 503 (default 256)"
    )
    p.add_argument("--trust", action="store_true", help="trust a new publisher's key on first use")


@command("serve", "kiln serve alice/digits-cnn@1.2.0 --port 8081", _serve_args)
def cmd_serve(a: argparse.Namespace) -> None:
    from ..compile.records import load_model
    from ..errors import InputError
    from ..serve import Limits, serve

    for flag in ("max_batch", "max_images", "max_inflight"):
        if not 1 <= getattr(a, flag) <= 100_000:
            raise InputError(f"--{flag.replace('_', '-')} {getattr(a, flag)}: use 1 to 100000")
    if not 0 <= a.max_wait_ms <= 1000 or not 0 < a.max_body_mb <= 4096:
        raise InputError("--max-wait-ms takes 0-1000 and --max-body-mb 0-4096")
    path = os.path.join(a.C, a.model)
    model = load_model(path if os.path.exists(path) else a.model, repo=a.C, trust=a.trust)
    limits = Limits(max_body=int(a.max_body_mb * (1 << 20)), max_images=a.max_images, max_inflight=a.max_inflight)
    try:
        serve(model, host=a.host, port=a.port, max_batch=a.max_batch, max_wait=a.max_wait_ms / 1000, limits=limits)
    except KeyboardInterrupt:
        pass
