"""``kiln serve``'s HTTP face: ``POST /predict`` on a short ASGI path, the rest on FastAPI.

``/predict`` takes images as ``multipart/form-data`` (fields ``image`` or ``images``; any file
part counts), as JSON (``{"image": BASE64}`` or ``{"images": [BASE64, ...]}``), or as one raw
image body (``Content-Type: image/png`` ...). It answers
``{"model", "version", "predictions": [{"label", "probs": {class: p}}]}`` in the order sent.
Limits, each refused at once with a message: the body's bytes (413), images per request (413),
requests in flight (503) and images waiting for the batcher (503, ``Retry-After: 1``). A bad
image is a 400 that names it. ``GET /health`` and ``GET /metadata`` describe the server and the
model. The hot path skips FastAPI's routing and validation: a request's cost is then HTTP parsing
and its share of one batched onnxruntime call.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI
from fastapi.responses import Response

from ..errors import BadImage, InputError
from .batcher import Batcher, Busy

if TYPE_CHECKING:
    from ..package import Model


@dataclass(frozen=True)
class Limits:
    max_body: int = 8 << 20  # bytes of one request
    max_images: int = 64  # images in one request
    max_inflight: int = 256  # requests being answered at once


class TooLarge(InputError):
    pass


def metadata(model: Model) -> dict[str, Any]:
    m = model.manifest
    keys = (
        "name",
        "version",
        "publisher",
        "classes",
        "input",
        "metrics",
        "lineage",
        "architecture",
        "dependencies",
        "expect",
    )
    return {k: m.get(k) for k in keys} | {"digest": m.get("digest"), "source": model.source}


def create_app(model: Model, batcher: Batcher, limits: Limits | None = None) -> ServeApp:
    limits = limits or Limits()
    api = FastAPI(title=f"kiln serve {model.name}", docs_url=None, redoc_url=None, openapi_url=None)
    meta = metadata(model)

    @api.get("/health")
    def health() -> Response:
        return _json({"status": "ok", "model": model.name, "version": meta["version"], "stats": asdict(batcher.stats)})

    @api.get("/metadata")
    def describe() -> Response:
        return _json(meta)

    return ServeApp(model, batcher, limits, api)


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, ensure_ascii=False), status_code=status, media_type="application/json")


class ServeApp:
    def __init__(self, model: Model, batcher: Batcher, limits: Limits, api: FastAPI) -> None:
        self.model, self.batcher, self.limits, self.api = model, batcher, limits, api
        self.inflight = 0
        self.head = {"model": model.name, "version": model.manifest.get("version")}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict":
            await self.api(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _send(send, 405, {"error": "POST images to /predict (multipart, JSON base64, or a raw image body)"})
            return
        if self.inflight >= self.limits.max_inflight:
            await _send(send, 503, {"error": f"{self.inflight} requests in flight; retry in a moment"}, retry=True)
            return
        self.inflight += 1
        try:
            status, body, retry = await self._predict(scope, receive)
        finally:
            self.inflight -= 1
        await _send(send, status, body, retry=retry)

    async def _predict(self, scope: Any, receive: Any) -> tuple[int, dict[str, Any], bool]:
        headers = dict(scope["headers"])
        kind = headers.get(b"content-type", b"").decode("latin-1")
        try:
            body = await _read(receive, self.limits.max_body)
            images = parse_images(body, kind)
            if not images:
                raise InputError(
                    "no image in the request; send multipart field 'image', JSON {'image': BASE64}, or a raw image"
                )
            if len(images) > self.limits.max_images:
                raise TooLarge(f"{len(images)} images in one request; send at most {self.limits.max_images}")
            results = await self.batcher.predict(images)
        except TooLarge as e:
            return 413, {"error": str(e)}, False
        except Busy as e:
            return 503, {"error": str(e)}, True
        except InputError as e:
            return 400, {"error": str(e)}, False
        classes = self.model.classes
        out = []
        for (_, name), r in zip(images, results):
            if isinstance(r, BadImage):
                return 400, {"error": str(r)}, False
            if isinstance(r, Exception):
                return 500, {"error": f"{name}: the model failed ({r})"}, False
            k = int(r.argmax())
            probs = np.round(r.astype(np.float64), 6).tolist()  # one C call, not K Python rounds: ~30 us a request
            out.append({"label": classes[k], "probs": dict(zip(classes, probs))})
        return 200, {**self.head, "predictions": out}, False


async def _read(receive: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InputError("the client went away mid-request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request is over {limit:,} bytes; send smaller or fewer images")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Any, status: int, obj: dict[str, Any], *, retry: bool = False) -> None:
    body = json.dumps(obj, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---- request bodies --------------------------------------------------------------------------
def parse_images(body: bytes, content_type: str) -> list[tuple[bytes, str]]:
    """(encoded bytes, a name for messages) of each image in a request body."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return [
            (data, filename or name)
            for name, filename, data in parse_multipart(body, content_type)
            if _is_image_part(name, filename)
        ]
    if kind == "application/json":
        return _json_images(body)
    if kind.startswith("image/") or kind == "application/octet-stream":
        return [(body, "the request body")]
    raise InputError(
        f"Content-Type {kind or '(none)'} is not one /predict reads; send multipart/form-data, application/json "
        "or image/*"
    )


def _is_image_part(name: str, filename: str | None) -> bool:
    return name in ("image", "images", "file", "files") or filename is not None


def _json_images(body: bytes) -> list[tuple[bytes, str]]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise InputError(f"the request body is not JSON ({e})") from None
    if isinstance(doc, dict) and isinstance(doc.get("image"), str):
        items = [doc["image"]]
    elif isinstance(doc, dict) and isinstance(doc.get("images"), list):
        items = doc["images"]
    else:
        raise InputError('send {"image": BASE64} or {"images": [BASE64, ...]}')
    out = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, str):
                raise ValueError("not a string")
            out.append(
                (
                    base64.b64decode(item.split(",", 1)[-1] if item.startswith("data:") else item, validate=True),
                    f"image {i + 1}",
                )
            )
        except (ValueError, binascii.Error) as e:
            raise InputError(f"image {i + 1} is not base64 ({e}); encode the file's bytes with base64") from None
    return out


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """(field name, file name or None, bytes) of each part of a multipart/form-data body
    (RFC 7578). The body is whole and bounded, so the parts are slices of it."""
    boundary = None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary or len(boundary) > 200:
        raise InputError("multipart/form-data without a boundary; let your HTTP client build the form")
    delimiter = b"--" + boundary.encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise InputError("the multipart body is cut short or malformed (no closing boundary)")
    parts = []
    for section in sections[1:-1]:
        if not section.startswith(b"\r\n") or not section.endswith(b"\r\n"):
            raise InputError("the multipart body is malformed (a part does not start and end with CRLF)")
        head, sep, data = section[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise InputError("a multipart part has no blank line after its headers")
        name, filename = _disposition(head)
        parts.append((name, filename, data))
    return parts


def _disposition(head: bytes) -> tuple[str, str | None]:
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        params: dict[str, str] = {}
        for item in value.split(";")[1:]:
            k, _, v = item.strip().partition("=")
            params[k.lower()] = v.strip().strip('"')
        return params.get("name", ""), params.get("filename")
    raise InputError("a multipart part has no Content-Disposition header")
