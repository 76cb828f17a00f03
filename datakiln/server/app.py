"""The HTTP layer of ``kiln ui``: routes that call ``datakiln.workspace.Workspace`` and nothing else.

Security model (a local app that can change a repository):
* the server binds 127.0.0.1 unless told otherwise, and then only answers requests whose Host
  is a loopback name with its port, which stops DNS-rebinding pages from reading it;
* GET never changes anything; every other method needs the per-process token, which only a page
  served by this server can read (it is in the HTML), and an Origin, when sent, of this server;
* no path in a request reaches the filesystem: images are named by blob id (64 hex digits),
  examples by id, builds and jobs by ids checked by the library; static files come from the
  package's own directory.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    BuildNotFound,
    ConcurrencyError,
    ExampleNotFound,
    InputError,
    KilnError,
    MissingObject,
    NothingToCommit,
    RevisionNotFound,
)
from .gallery import Query
from .thumbs import check_blob
from .workspace import Workspace

TOKEN_HEADER = "x-kiln-token"
PAGES = ("", "gallery", "example", "review", "label", "changes", "history", "builds")
IMMUTABLE = "public, max-age=31536000, immutable"
UPLOAD_MAX = 64 * 1024 * 1024  # bytes a request; the page sends bigger selections in batches
BODY_MAX = 16 * 1024 * 1024  # any other request: 100,000 labels at once fit
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'",
    # Other sites may not embed our images or scripts (no probing whether a known image is here).
    "Cross-Origin-Resource-Policy": "same-origin",
}
NOT_FOUND = (ExampleNotFound, BuildNotFound, RevisionNotFound, MissingObject)
CONFLICT = (NothingToCommit, ConcurrencyError)


def ui_file(name: str) -> str:
    return (resources.files("datakiln") / "ui" / name).read_text()


def as_json(obj: Any, status: int = 200) -> Response:
    # json.dumps directly: FastAPI's encoder walks every value in Python, slow for 20k-point maps.
    return Response(json.dumps(obj, ensure_ascii=False), status_code=status, media_type="application/json")


def error(status: int, message: str) -> Response:
    return as_json({"error": message}, status)


def create_app(ws: Workspace, *, hosts: set[str], token: str | None = None) -> FastAPI:
    """The app over ``ws``, answering only requests whose Host header is in ``hosts``."""
    token = token or secrets.token_urlsafe(24)
    app = FastAPI(title="kiln ui", docs_url=None, redoc_url=None, openapi_url=None)
    shell = ui_file("index.html").replace("{{token}}", token).replace("{{name}}", _html(ws.repo.root.name))

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = _refusal(request, hosts, token) or await call_next(request)
        for k, v in SECURITY_HEADERS.items():  # refusals too: a 403 page is a page
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, e: Exception) -> Response:
        return _closing(error(413, str(e)))

    @app.exception_handler(KilnError)
    async def kiln_error(request: Request, e: Exception) -> Response:
        code = 404 if isinstance(e, NOT_FOUND) else 409 if isinstance(e, CONFLICT) else 400
        return error(code, str(e))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: Exception) -> Response:
        missing = [".".join(str(x) for x in err["loc"][1:]) for err in getattr(e, "errors", list)()]
        return error(400, f"missing or bad parameter(s): {', '.join(missing)}; see docs/ui.md")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: Exception) -> Response:
        code = getattr(e, "status_code", 500)
        return error(code, f"{request.method} {request.url.path}: {getattr(e, 'detail', '')}")

    app.mount("/static", StaticFiles(packages=[("datakiln", "ui/static")]), name="static")
    _image_routes(app, ws)
    _read_routes(app, ws)
    _build_routes(app, ws)
    _write_routes(app, ws)

    @app.get("/{path:path}")
    def page(path: str) -> Response:
        if path.startswith("api/"):
            return error(404, f"no endpoint GET /{path}; docs/ui.md lists them")
        if path.split("/", 1)[0] not in PAGES:
            return error(404, f"no page /{path}")
        return HTMLResponse(shell, headers={"Cache-Control": "no-store"})

    return app


def _refusal(request: Request, hosts: set[str], token: str) -> Response | None:
    """The response that refuses ``request`` (wrong host, another site, no token, too big), or None."""
    host = request.headers.get("host", "")
    if host not in hosts:
        return error(403, f"host {host[:80]!r} is not this server; open http://{sorted(hosts)[0]}/ (or --allow-host)")
    if _from_another_site(request):
        return error(403, "requests made by other sites' pages are refused")
    if request.method in ("GET", "HEAD"):
        return None
    size = request.headers.get("content-length")
    limit = body_limit(request)
    # No length (a chunked body) is counted as it arrives instead (``_body``).
    if size is not None and (not size.isdigit() or int(size) > limit):
        return _closing(error(413, f"the request body has {size[:20]} bytes; send at most {limit:,}"))
    if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), token):
        return error(403, "missing or wrong X-Kiln-Token; reload the page served by 'kiln ui'")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{host}":
        return error(403, f"origin {origin!r} may not change this repository")
    return None


def _closing(response: Response) -> Response:
    """Close the connection after this response: the client is still sending a body we refused."""
    response.headers["Connection"] = "close"
    return response


class TooLarge(Exception):
    """A request body that grew past its limit while it was read (413)."""


def body_limit(request: Request) -> int:
    return UPLOAD_MAX if request.url.path == "/api/import" else BODY_MAX


def _from_another_site(request: Request) -> bool:
    """A request another site's page made (an <img>, a fetch): refused, so no page can probe the
    repository. Following a link to the app from elsewhere is a top-level navigation, allowed."""
    h = request.headers
    navigation = h.get("sec-fetch-mode") == "navigate" and h.get("sec-fetch-dest") == "document"
    return h.get("sec-fetch-site") == "cross-site" and not navigation


def _html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _image_routes(app: FastAPI, ws: Workspace) -> None:
    def send(request: Request, blob: str, get: Callable[[str], tuple[bytes, str]]) -> Response:
        etag = f'"{check_blob(blob)}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": IMMUTABLE})
        data, ctype = get(blob)
        return Response(data, media_type=ctype, headers={"ETag": etag, "Cache-Control": IMMUTABLE})

    @app.get("/img/{blob}")
    def image(request: Request, blob: str) -> Response:
        return send(request, blob, ws.image)

    @app.get("/thumb/{blob}")
    def thumb(request: Request, blob: str) -> Response:
        return send(request, blob, ws.thumbnail)

    @app.get("/api/examples/{eid}/thumb")
    def thumb_of(request: Request, eid: str) -> Response:
        return send(request, ws.blob_of(eid), ws.thumbnail)


def _flag(v: str | None) -> bool:
    return v in ("1", "true", "yes", "on")


def _int(v: str | None, default: int, name: str) -> int:
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        raise InputError(f"{name}={v!r} is not a whole number") from None


def _read_routes(app: FastAPI, ws: Workspace) -> None:
    @app.get("/api/status")
    def status() -> Response:
        return as_json(ws.status())

    @app.get("/api/facets")
    def facets(build: str | None = None) -> Response:
        return as_json(ws.facets(build))

    @app.get("/api/gallery")
    def gallery(request: Request) -> Response:
        p = request.query_params
        q = Query(
            label=p.get("label") or None,
            split=p.get("split") or None,
            source=p.get("source") or None,
            meta=p.get("meta") or None,
            issue=_flag(p.get("issue")),
            unlabeled=_flag(p.get("unlabeled")),
            given=p.get("given") or None,
            predicted=p.get("predicted") or None,
            wrong=_flag(p.get("wrong")),
            search=p.get("search") or None,
            sort=p.get("sort") or "added",
            offset=_int(p.get("offset"), 0, "offset"),
            limit=_int(p.get("limit"), 100, "limit"),
        )
        return as_json(ws.gallery(q, p.get("build") or None))

    @app.get("/api/examples/{eid}")
    def example(eid: str) -> Response:
        return as_json(ws.example(eid))

    @app.get("/api/review")
    def review_items(build: str | None = None) -> Response:
        return as_json(ws.review_items(build))

    @app.get("/api/queue")
    def label_queue() -> Response:
        return as_json(ws.label_queue())

    @app.get("/api/changes")
    def changes() -> Response:
        return as_json(ws.changes())

    @app.get("/api/log")
    def log(n: str | None = None, offset: str | None = None, rev: str | None = None) -> Response:
        return as_json(ws.log(_int(n, 50, "n"), _int(offset, 0, "offset"), rev or "HEAD"))

    @app.get("/api/commits/{rev}")
    def show(rev: str) -> Response:
        return as_json(ws.show(rev))

    @app.get("/api/compare")
    def compare(a: str, b: str) -> Response:
        return as_json(ws.compare(a, b))


def _build_routes(app: FastAPI, ws: Workspace) -> None:
    @app.get("/api/builds")
    def builds() -> Response:
        return as_json(ws.build_list())

    @app.get("/api/builds/{bid}/report")
    def report(bid: str) -> Response:
        return as_json(ws.report(bid))

    @app.get("/api/builds/{bid}/map")
    def embedding_map(bid: str) -> Response:
        return as_json(ws.embedding_map(bid))

    @app.get("/api/compare-builds")
    def compare_builds(a: str, b: str) -> Response:
        return as_json(ws.compare_builds(a, b))

    @app.get("/api/jobs/{jid}")
    def job(jid: str) -> Response:
        return as_json(ws.job(jid))


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object a request sends, read chunk by chunk: a body with no length (chunked) is
    refused as soon as it passes the limit, not buffered whole first."""
    limit = body_limit(request)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body has more than {limit:,} bytes; send at most {limit:,}")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise InputError("the request body is not JSON (or nests too deep)") from None
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(x, str) for x in ids):
        raise InputError('expected {"ids": ["example id", ...]}')
    return ids


def _files(raw: Any) -> list[tuple[str, str | None, bytes]]:
    """``[{"name", "label", "data": base64}]`` from the page, checked for shape."""
    if not isinstance(raw, list) or not raw:
        raise InputError('expected {"files": [{"name": ..., "label": ..., "data": base64}, ...]}')
    out = []
    for f in raw:
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("data"), str)):
            raise InputError('each file must be {"name": ..., "label": ..., "data": base64}')
        label = f.get("label")
        if label is not None and not isinstance(label, str):
            raise InputError(f"label of {f['name'][:80]!r} must be text or null")
        try:
            data = base64.b64decode(f["data"], validate=True)
        except ValueError:
            raise InputError(f"{f['name'][:80]!r}: data is not base64") from None
        out.append((f["name"], label, data))
    return out


def check_pairs(raw: Any) -> tuple[list[tuple[str, str | None]], dict[str, str | None]]:
    """``[{"id": ..., "label": ..., "expect"?: ...}, ...]``, checked for shape (labels are checked
    by the library): the pairs, and the labels the page saw where it said."""
    if not isinstance(raw, list) or not raw:
        raise InputError('expected {"items": [{"id": ..., "label": ...}, ...]}')
    out, expect = [], {}
    for x in raw:
        ok = isinstance(x, dict) and isinstance(x.get("id"), str) and "label" in x
        if not ok or not isinstance(x["label"], str | None) or not isinstance(x.get("expect"), str | None):
            raise InputError(f'{str(x)[:80]} is not {{"id": "...", "label": "..." or null}}')
        out.append((x["id"], x["label"]))
        if "expect" in x:
            expect[x["id"]] = x["expect"]
    return out, expect


def _expect(body: dict[str, Any]) -> dict[str, str | None] | None:
    """``{"expect": {id: label the page showed}}``: refuse the change if the label moved since."""
    raw = body.get("expect")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(v, str | None) for v in raw.values()):
        raise InputError('expect must be {"example id": "label it showed" or null}')
    return raw


def _write_routes(app: FastAPI, ws: Workspace) -> None:
    # async + run_in_threadpool: the body is read on the event loop, the repository work in a thread.
    @app.post("/api/label")
    async def label(request: Request) -> Response:
        pairs, expect = check_pairs((await _body(request)).get("items"))
        return as_json(await run_in_threadpool(ws.label, pairs, expect))

    @app.post("/api/accept")
    async def accept(request: Request) -> Response:
        b = await _body(request)
        build = b.get("build")
        if not isinstance(build, str | None):
            raise InputError("build must be a build id or null")
        return as_json(await run_in_threadpool(ws.accept, _ids(b), _expect(b), build))

    @app.post("/api/keep")
    async def keep(request: Request) -> Response:
        b = await _body(request)
        return as_json(await run_in_threadpool(ws.keep, _ids(b), _expect(b)))

    @app.post("/api/restore")
    async def restore(request: Request) -> Response:
        token = (await _body(request)).get("undo")
        if not isinstance(token, str):
            raise InputError('expected {"undo": TOKEN} (the token a labelling request returned)')
        return as_json(await run_in_threadpool(ws.restore, token))

    @app.post("/api/queue")
    async def fill_queue(request: Request) -> Response:
        b = await _body(request)
        n, strategy = b.get("n", 20), b.get("strategy", "auto")
        if type(n) is not int or not isinstance(strategy, str):
            raise InputError('expected {"n": 20, "strategy": "auto"}')
        return as_json(await run_in_threadpool(ws.fill_queue, n, strategy))

    @app.post("/api/commit")
    async def commit(request: Request) -> Response:
        message = (await _body(request)).get("message")
        if not isinstance(message, str):
            raise InputError('expected {"message": "why the labels changed"}')
        return as_json({"commit": await run_in_threadpool(ws.commit, message)})

    @app.post("/api/discard")
    async def discard(request: Request) -> Response:
        b = await _body(request)
        await run_in_threadpool(ws.discard, _ids(b) if "ids" in b else None)
        return as_json({"ok": True})

    @app.post("/api/import")
    async def import_files(request: Request) -> Response:
        files = _files((await _body(request)).get("files"))
        return as_json(await run_in_threadpool(ws.import_files, files))

    @app.post("/api/builds")
    async def start_build(request: Request) -> Response:
        b = await _body(request)
        rev, overrides = b.get("rev") or "HEAD", b.get("overrides") or {}
        if not isinstance(rev, str) or not isinstance(overrides, dict):
            raise InputError('expected {"rev": "HEAD", "overrides": {"epochs": 10}}')
        return as_json(await run_in_threadpool(ws.start_build, rev, overrides))

    @app.post("/api/jobs/{jid}/cancel")
    async def cancel(jid: str) -> Response:
        return as_json(await run_in_threadpool(ws.cancel_job, jid))
