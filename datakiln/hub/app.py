"""The hub's HTTP face (FastAPI): the transfer protocol, a JSON API, and (``hub.pages``) web pages.

Routes (docs/hub.md): ``/OWNER/NAME/kiln/{refs,fetch,objects,push}`` speak the transfer
protocol; ``/api/v1/...`` is the JSON API the ``kiln`` client uses for repositories and change
requests; ``/api/datasets/...`` and ``/datasets/.../resolve/...`` are the read side of the
Hugging Face Hub API (``hub.hf``). Every route finds out who asks (a bearer token, or the
pages' session cookie) and asks ``Hub.access``; handlers are thin over ``hub.protocol``,
``hub.requests`` and ``Repo``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import (
    AuthRequired,
    BuildNotFound,
    ConcurrencyError,
    ExampleError,
    InputError,
    IntegrityError,
    KilnError,
    PackageNotFound,
    PermissionDenied,
    RepoNotFound,
    RevisionError,
    StateError,
)
from ..store import wire
from ..store.fsutil import temp_path
from . import protocol
from .hub import Hub
from .meta import Token

WIRE = "application/x-kiln-wire"


class TooLarge(Exception):
    pass


def status_of(e: KilnError) -> int:
    """The HTTP status of a library error: the client maps it back (``store.remote``)."""
    for cls, code in (
        (AuthRequired, 401),
        (PermissionDenied, 403),
        (RepoNotFound, 404),
        (RevisionError, 404),
        (ExampleError, 404),
        (BuildNotFound, 404),
        (PackageNotFound, 404),
        (ConcurrencyError, 409),
        (StateError, 409),
        (InputError, 400),
        (IntegrityError, 400),
    ):
        if isinstance(e, cls):
            return code
    return 500


def error_response(e: KilnError) -> Response:
    response = json_response({"error": str(e), "kind": type(e).__name__}, status_of(e))
    # The Hugging Face client tells a missing repository from a missing revision by this header.
    code = {RepoNotFound: "RepoNotFound", RevisionError: "RevisionNotFound"}
    for cls, name in code.items():
        if isinstance(e, cls):
            response.headers["X-Error-Code"] = name
            text = "".join(c if " " <= c <= "~" else "?" for c in str(e)[:200])  # a header: no control bytes
            response.headers["X-Error-Message"] = text
    return response


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, ensure_ascii=False), status_code=status, media_type="application/json")


def bearer(request: Request) -> str | None:
    """The request's bearer token. Never the pages' cookie: a browser sends that to any request a
    page of another site makes, so only the pages (which check the Origin of every form) read it."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


async def read_json(request: Request, limit: int = 64 << 20) -> Any:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the request body is over {limit:,} bytes")
    try:
        return json.loads(body or b"{}")
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"the request body is not JSON ({e})") from None


def create_app(hub: Hub) -> HubApp:
    app = FastAPI(title="kiln hub", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = hub

    @app.exception_handler(KilnError)
    async def _kiln_error(request: Request, e: KilnError) -> Response:
        return error_response(e)

    @app.exception_handler(TooLarge)
    async def _too_large(request: Request, e: TooLarge) -> Response:
        return json_response({"error": str(e), "kind": "TooLarge"}, 413)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        return json_response({"error": f"bad request: {e.errors()[:3]}", "kind": "InputError"}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        return json_response({"error": str(e.detail), "kind": "HTTPError"}, e.status_code)

    add_api_routes(app, hub)
    from . import hf, package_pages, pages, registry

    hf.add_routes(app, hub)
    registry.add_routes(app, hub)
    package_pages.add_routes(app, hub)
    pages.add_routes(app, hub)  # last: its /OWNER/NAME routes would shadow the others
    return HubApp(hub, app)


def who(hub: Hub, request: Request) -> Token | None:
    return hub.identify(bearer(request))


async def _refs(hub: Hub, request: Request, owner: str, name: str) -> Response:
    token = who(hub, request)
    info = hub.access(token, owner, name, "read")
    # The caller's role, so a client can say "no write access" before sending a large pack.
    return json_response({**protocol.advertise(hub.open(info)), "role": hub.role(token, info)})


async def _fetch(hub: Hub, request: Request, owner: str, name: str) -> Response:
    info = hub.access(who(hub, request), owner, name, "read")
    body = await read_json(request)
    repo = hub.open(info)
    header = protocol.up_to_date(repo, body)  # most fetches (a team polling) bring nothing: no thread for those
    if header is not None:
        return Response(wire.frame(header) + wire.encode(repo.store, []), media_type=WIRE)
    header, objects = await run_in_threadpool(protocol.plan_fetch, repo, body)
    return _stream(wire.frame(header), repo, objects)


async def _objects(hub: Hub, request: Request, owner: str, name: str) -> Response:
    info = hub.access(who(hub, request), owner, name, "read")
    body = await read_json(request)
    repo = hub.open(info)
    ids = await run_in_threadpool(protocol.plan_objects, repo, body)
    return _stream(b"", repo, ids)


async def _push(hub: Hub, request: Request, owner: str, name: str) -> Response:
    token = who(hub, request)
    info = hub.access(token, owner, name, "write")
    may_force = hub.role(token, info) == "admin"
    repo = hub.open(info)
    # The body is spooled to the repository's tmp/ first (a crash leaves a file 'kiln gc'
    # removes), then read by a worker thread: the checks are synchronous code.
    spool = temp_path(repo.tmp_dir, "push")
    try:
        await _spool(request, spool, hub.push_max)
        with open(spool, "rb") as f:
            results = await run_in_threadpool(protocol.receive_push, repo, f, may_force=may_force, limit=hub.push_max)
    finally:
        spool.unlink(missing_ok=True)
    return json_response({"results": results})


Handler = Callable[[Hub, Request, str, str], Awaitable[Response]]
PROTOCOL: dict[str, tuple[str, Handler]] = {
    "refs": ("GET", _refs),
    "fetch": ("POST", _fetch),
    "objects": ("POST", _objects),
    "push": ("POST", _push),
}
_PROTOCOL_PATH = re.compile(r"^/([^/]+)/([^/]+)/kiln/(refs|fetch|objects|push)$")


class HubApp:
    """The ASGI app: the transfer protocol on a short path (plain Starlette requests: every
    client's every fetch goes through here, and FastAPI's routing and dependency machinery cost
    more than the no-op fetch itself), everything else through FastAPI."""

    def __init__(self, hub: Hub, api: FastAPI) -> None:
        self.hub, self.api = hub, api

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        m = _PROTOCOL_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if m is None or scope["method"] != PROTOCOL[m[3]][0]:
            await self.api(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await PROTOCOL[m[3]][1](self.hub, request, m[1], m[2])
        except KilnError as e:
            response = error_response(e)
        except TooLarge as e:
            response = json_response({"error": str(e), "kind": "TooLarge"}, 413)
        except ClientDisconnect:
            return  # the client went away mid-body (an interrupted push): nothing to answer
        await response(scope, receive, send)


SMALL = 256  # objects: an answer this small is built at once, not streamed chunk by chunk through threads


def _stream(head: bytes, repo: Any, objects: list[str]) -> Response:
    if len(objects) <= SMALL:
        return Response(head + wire.encode(repo.store, objects), media_type=WIRE)

    def chunks() -> Iterator[bytes]:
        yield head
        yield from wire.encode_stream(repo.store, objects)

    return StreamingResponse(chunks(), media_type=WIRE)


async def _spool(request: Request, path: Any, limit: int) -> None:
    size = 0
    with open(path, "wb", buffering=1 << 20) as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the push is over the hub's limit of {limit:,} bytes; nothing was kept")
            f.write(
                chunk
            )  # no fsync: the spool is read back at once and deleted; a crash loses a push the client sees fail


def add_api_routes(app: FastAPI, hub: Hub) -> None:
    from . import requests as changes

    @app.get("/api/v1/user")
    def whoami(request: Request) -> Response:
        token = who(hub, request)
        if token is None:
            raise AuthRequired("no token sent; run 'kiln login URL'")
        return json_response({"user": token.user, "scopes": list(token.scopes), "expires": token.expires})

    @app.get("/api/v1/repos")
    def repos(request: Request) -> Response:
        return json_response({"repos": [r.to_json() for r in hub.visible(who(hub, request))]})

    @app.post("/api/v1/repos")
    async def create(request: Request) -> Response:
        token = who(hub, request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InputError("send {'name': 'NAME', 'owner': 'OWNER', 'private': true|false}")
        owner = body.get("owner") or (token.user if token else "")
        info = hub.create(
            token,
            str(owner),
            body["name"],
            private=bool(body.get("private")),
            description=str(body.get("description", "")),
        )
        return json_response(info.to_json(), 201)

    @app.get("/api/v1/repos/{owner}/{name}")
    def repo_info(owner: str, name: str, request: Request) -> Response:
        token = who(hub, request)
        info = hub.access(token, owner, name, "read")
        out = {**info.to_json(), "role": hub.role(token, info), **protocol.advertise(hub.open(info))}
        return json_response(out)

    @app.put("/api/v1/repos/{owner}/{name}/collaborators/{user}")
    async def collaborator(owner: str, name: str, user: str, request: Request) -> Response:
        hub.access(who(hub, request), owner, name, "admin")
        body = await read_json(request)
        role = body.get("role") if isinstance(body, dict) else None
        hub.meta.set_role(owner, name, user, role)
        return json_response({"user": user, "role": role})

    changes.add_routes(app, hub)
