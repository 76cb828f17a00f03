"""Change requests: a proposal to merge one branch of a hosted repository into another, with
comments and approvals, merged on the hub by the same row-level three-way merge as
``kiln merge`` (``Repo.merge_into``). A merge that conflicts changes nothing and names every
conflicting example.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..errors import AuthRequired, InputError, RevisionNotFound, StateError
from ..repo import Repo, history
from ..repo import merge as merging
from ..repo.table import diff_tables
from ..store.refs import check_name
from .hub import Hub
from .meta import RepoInfo, Token

TITLE_MAX = 300
BODY_MAX = 20_000
DIFF_SHOWN = 500  # rows of a request's diff sent to a page or client; counts are always whole


def _branch(repo: Repo, name: object, what: str) -> str:
    if not isinstance(name, str):
        raise InputError(f"{what} must be a branch name")
    check_name(name, "branch")
    cid = repo.refs.read(f"refs/heads/{name}")
    if cid is None:
        raise RevisionNotFound(f"{what} {name!r} is not a branch of this repository; push it first")
    return cid


def check_text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InputError(f"{what} must be text of 1-{limit:,} characters")
    return history.check_message(value) if what == "the title" else value.strip()


def open_request(hub: Hub, info: RepoInfo, who: Token, body: Any) -> int:
    if not isinstance(body, dict):
        raise InputError("send {'source': BRANCH, 'target': BRANCH, 'title': TEXT}")
    repo = hub.open(info)
    head = _branch(repo, body.get("source"), "the source")
    base = _branch(repo, body.get("target"), "the target")
    if body["source"] == body["target"]:
        raise InputError("the source and target of a change request must be different branches")
    title = check_text(body.get("title"), "the title", TITLE_MAX)
    now = int(time.time())
    fields = {
        "source": body["source"],
        "target": body["target"],
        "title": title,
        "author": who.user,
        "state": "open",
        "created": now,
        "updated": now,
        "base": base,
        "head": head,
    }
    number = hub.meta.add_request(info.owner, info.name, fields)
    if isinstance(body.get("body"), str) and body["body"].strip():
        hub.meta.add_comment(info.owner, info.name, number, who.user, check_text(body["body"], "the comment", BODY_MAX))
    return number


def existing(hub: Hub, info: RepoInfo, number: int) -> dict[str, Any]:
    """The request's record; ``RevisionNotFound`` if there is none with that number."""
    req = hub.meta.request(info.owner, info.name, number)
    if req is None:
        raise RevisionNotFound(f"change request #{number} does not exist in {info.full_name}")
    return req


def describe(hub: Hub, info: RepoInfo, number: int) -> dict[str, Any]:
    """A request with what merging it would change now (diff from the merge base to the source)
    and the examples that would conflict."""
    req = existing(hub, info, number)
    repo = hub.open(info)
    source = repo.refs.read(f"refs/heads/{req['source']}")
    target = repo.refs.read(f"refs/heads/{req['target']}")
    req["source_commit"], req["target_commit"] = source, target
    if req["state"] != "open" or source is None or target is None:
        req["diff"], req["conflicts"], req["mergeable"] = None, [], False
        return req
    base = history.merge_base(repo.store, target, source)
    diff = diff_tables(repo.table_at(base), repo.table_at(source))  # no base: everything is new
    req["counts"] = {"added": len(diff["added"]), "removed": len(diff["removed"]), "relabeled": len(diff["relabeled"])}
    req["diff"] = {
        "added": diff["added"][:DIFF_SHOWN],
        "removed": diff["removed"][:DIFF_SHOWN],
        "relabeled": diff["relabeled"][:DIFF_SHOWN],
    }
    conflicts: list[Any] = []
    if base and base not in (source, target):
        tables = repo.table_at(base), repo.table_at(target), repo.table_at(source)
        _, conflicts = merging.three_way(*tables, repo.segments)
    req["merge_base"] = base
    req["conflicts"] = conflicts
    req["mergeable"] = base is not None and not conflicts and base != source
    return req


def merge_request(hub: Hub, info: RepoInfo, who: Token, number: int) -> merging.MergeResult:
    req = existing(hub, info, number)
    if req["state"] != "open":
        raise StateError(f"change request #{number} is {req['state']}; only an open request can be merged")
    repo = hub.open(info)
    message = f"merge request #{number} from {req['source']}: {req['title']}"
    result = repo.merge_into(req["target"], f"refs/heads/{req['source']}", message=message, author=who.user)
    if result["result"] != "conflicts":
        hub.meta.update_request(
            info.owner,
            info.name,
            number,
            {"state": "merged", "merged_commit": result["commit"], "updated": int(time.time())},
        )
    return result


def close_request(hub: Hub, info: RepoInfo, number: int) -> None:
    req = existing(hub, info, number)
    if req["state"] != "open":
        raise StateError(f"change request #{number} is already {req['state']}")
    hub.meta.update_request(info.owner, info.name, number, {"state": "closed", "updated": int(time.time())})


def add_routes(app: FastAPI, hub: Hub) -> None:
    from .app import json_response, read_json, who

    base = "/api/v1/repos/{owner}/{name}/requests"

    @app.get(base)
    def list_requests(owner: str, name: str, request: Request, state: str | None = None) -> Response:
        info = hub.access(who(hub, request), owner, name, "read")
        return json_response({"requests": hub.meta.requests(info.owner, info.name, state)})

    @app.post(base)
    async def create(owner: str, name: str, request: Request) -> Response:
        token = who(hub, request)
        info = hub.access(token, owner, name, "write")
        assert token is not None  # write access needs a token
        body = await read_json(request)

        def run() -> dict[str, Any]:  # a diff and a three-way merge: not on the event loop
            return describe(hub, info, open_request(hub, info, token, body))

        return json_response(await run_in_threadpool(run), 201)

    @app.get(base + "/{number}")
    def show(owner: str, name: str, number: int, request: Request) -> Response:
        info = hub.access(who(hub, request), owner, name, "read")
        return json_response(describe(hub, info, number))

    @app.post(base + "/{number}/comments")
    async def comment(owner: str, name: str, number: int, request: Request) -> Response:
        token = who(hub, request)
        info = hub.access(token, owner, name, "read")
        if token is None:
            raise AuthRequired("commenting needs a token; run 'kiln login URL'")
        existing(hub, info, number)
        body = await read_json(request)
        text = check_text(body.get("body") if isinstance(body, dict) else None, "the comment", BODY_MAX)
        hub.meta.add_comment(info.owner, info.name, number, token.user, text)
        return json_response(await run_in_threadpool(describe, hub, info, number), 201)

    @app.post(base + "/{number}/approve")
    def approve(owner: str, name: str, number: int, request: Request) -> Response:
        token = who(hub, request)
        info = hub.access(token, owner, name, "write")
        assert token is not None
        existing(hub, info, number)
        hub.meta.approve(info.owner, info.name, number, token.user)
        return json_response(describe(hub, info, number))

    @app.post(base + "/{number}/merge")
    def merge(owner: str, name: str, number: int, request: Request) -> Response:
        token = who(hub, request)
        info = hub.access(token, owner, name, "write")
        assert token is not None
        result = merge_request(hub, info, token, number)
        return json_response(result, 409 if result["result"] == "conflicts" else 200)

    @app.post(base + "/{number}/close")
    def close(owner: str, name: str, number: int, request: Request) -> Response:
        token = who(hub, request)
        info = hub.access(token, owner, name, "write")
        close_request(hub, info, number)
        return json_response(describe(hub, info, number))
