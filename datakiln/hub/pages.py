"""The hub's web pages, read by humans: repositories, a repository (counts, label chart,
branches, commits, a gallery), a commit's diff with thumbnails old -> new, change requests with
their diff, comments, approvals and a merge button.

Rendered on the server as plain HTML (no script at all: the chart is SVG, actions are forms), so
the Content-Security-Policy can forbid every script. A browser signs in by pasting a token
(``/login``), kept in an HttpOnly, SameSite=Strict cookie; forms are also checked for a
same-origin ``Origin``. Access is ``Hub.access``, as for the API.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..errors import AuthRequired, InputError, KilnError, PermissionDenied
from ..repo import Repo
from ..repo.table import Table, diff_tables
from ..server.thumbs import thumbnail
from . import requests as changes
from .hub import Hub
from .meta import RepoInfo, Token

CSS = (Path(__file__).parent / "hub.css").read_text()
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
GALLERY = 60  # thumbnails on a repository page
SHOWN = 120  # examples of each kind of change shown on a diff


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, who: Token | None, status: int = 200) -> Response:
    user = (
        f'signed in as <b>{e(who.user)}</b> <form method="post" action="/logout" class="inline">'
        "<button>sign out</button></form>"
        if who
        else '<a href="/login">sign in</a>'
    )
    doc = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)} · kiln hub</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/static/hub.css"></head><body>'
        f'<header><span><a href="/" class="brand">kiln hub</a> <a href="/" class="nav">repositories</a> '
        f'<a href="/packages" class="nav">packages</a></span><span class="user">{user}</span></header>'
        f"<main>{body}</main></body></html>"
    )
    return Response(doc, status_code=status, media_type="text/html; charset=utf-8", headers=HEADERS)


def short(cid: str | None) -> str:
    return (cid or "")[:10]


def when(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


# ---- pieces ------------------------------------------------------------------------------------
def thumb(info: RepoInfo, table: Table, eid: str) -> str:
    i = table.index.get(eid)
    if i is None:
        return '<span class="nothumb">—</span>'
    return (
        f'<img src="/{e(info.owner)}/{e(info.name)}/thumb/{table.blobs[i]}" alt="{e(eid[:12])}" width="48" height="48">'
    )


def label_chart(labels: Counter[str]) -> str:
    """A horizontal bar per label, as SVG (no script)."""
    if not labels:
        return "<p>No labels yet.</p>"
    top = max(labels.values())
    rows = sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))[:40]
    bars = "".join(
        f'<g transform="translate(0,{i * 22})"><text x="0" y="15">{e(lab)}</text>'
        f'<rect x="120" y="3" width="{max(1, int(360 * n / top))}" height="16"></rect>'
        f'<text x="{128 + int(360 * n / top)}" y="15">{n:,}</text></g>'
        for i, (lab, n) in enumerate(rows)
    )
    return f'<svg class="chart" role="img" aria-label="label distribution" width="560" height="{22 * len(rows)}">{bars}</svg>'


def counts_table(table: Table) -> str:
    splits = ("train", "valid", "test")
    grid: Counter[tuple[str, str]] = Counter()
    for lab, sp in zip(table.cols["label"], table.cols["split"]):
        grid[("(unlabeled)" if lab is None else str(lab), str(sp))] += 1
    labels = sorted({k[0] for k in grid})
    head = "".join(f"<th>{s}</th>" for s in splits)
    rows = "".join(
        f"<tr><td>{e(lab)}</td>"
        + "".join(f"<td>{grid[(lab, s)]:,}</td>" for s in splits)
        + f"<td>{sum(grid[(lab, s)] for s in splits):,}</td></tr>"
        for lab in labels
    )
    return f'<table class="counts"><tr><th>label</th>{head}<th>all</th></tr>{rows}</table>'


def diff_html(
    info: RepoInfo, old: Table, new: Table, diff: dict[str, Any], counts: dict[str, int] | None = None
) -> str:
    """Relabeled, added and removed examples with thumbnails; ``counts`` when ``diff`` was cut short."""
    rel = diff["relabeled"]
    n = counts or {k: len(diff[k]) for k in ("added", "removed", "relabeled")}
    parts = [f"<p>{n['added']:,} added, {n['removed']:,} removed, {n['relabeled']:,} relabeled</p>"]
    if rel:
        cells = "".join(
            f'<li class="change">{thumb(info, new, r["id"])}<span><code>{e(r["id"][:12])}</code> '
            f'<span class="old">{e(r["old"])}</span> → <span class="new">{e(r["new"])}</span></span></li>'
            for r in rel[:SHOWN]
        )
        parts.append(f'<h3>Relabeled</h3><ul class="changes">{cells}</ul>')
    for kind, table in (("added", new), ("removed", old)):
        ids = diff[kind]
        if ids:
            cells = "".join(
                f'<li class="change">{thumb(info, table, i)}<span><code>{e(i[:12])}</code> '
                f"{e(table.label_of(i)[0]) if i in table.index else ''}</span></li>"
                for i in ids[:SHOWN]
            )
            parts.append(f'<h3>{kind.capitalize()}</h3><ul class="changes">{cells}</ul>')
    return "".join(parts)


def conflicts_html(info: RepoInfo, table: Table, conflicts: list[Any]) -> str:
    if not conflicts:
        return ""

    def side(v: Any) -> str:
        return "(removed)" if v is None else e(v["label"])

    rows = "".join(
        f'<li class="conflict">{thumb(info, table, c["id"])}<span><code>{e(c["id"])}</code> '
        f"target: <b>{side(c['ours'])}</b>, source: <b>{side(c['theirs'])}</b></span></li>"
        for c in conflicts
    )
    return f'<h3 class="bad">{len(conflicts)} conflicting example(s)</h3><ul class="changes">{rows}</ul>'


async def form_fields(request: Request, limit: int = 64 << 10) -> dict[str, str]:
    """The fields of a urlencoded form (the pages' forms send nothing else): first value each."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise InputError("send the form from the hub's page (application/x-www-form-urlencoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InputError(f"the form is over {limit:,} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[0] for k, v in fields.items()}


# ---- routes ------------------------------------------------------------------------------------
Handler = Callable[..., Response]


def viewer(hub: Hub, request: Request) -> Token | None:
    """Who a browser is: the sign-in cookie's user, or a visitor (also when the cookie expired)."""
    try:
        return hub.identify(request.cookies.get("kiln_token"))
    except AuthRequired:
        return None


def guarded(hub: Hub, fn: Handler) -> Callable[..., Response]:
    """``fn(hub, request, who, **kw)`` with errors shown as pages, not JSON."""

    def run(request: Request, **kw: Any) -> Response:
        who = viewer(hub, request)
        try:
            return fn(hub, request, who, **kw)
        except KilnError as err:
            from .app import status_of

            return page("error", f'<h1>{status_of(err)}</h1><p class="bad">{e(err)}</p>', who, status_of(err))

    return run


def same_origin(request: Request) -> None:
    """Forms carry the sign-in cookie, so each must come from this hub's own pages: browsers
    send Origin with every POST; a request without one is not from a page of ours."""
    origin = request.headers.get("origin")
    if not origin or urlsplit(origin).netloc != request.headers.get("host"):
        raise PermissionDenied("this form was not sent from the hub's own pages; use them")


LOGIN_FORM = (
    '<h1>Sign in</h1><form method="post" action="/login" class="card">'
    '<label>Token <input name="token" type="password" autocomplete="off" required></label>'
    "<button>Sign in</button></form><p class=muted>The hub's admin makes tokens: "
    "<code>kiln hub token add USER</code>.</p>"
)


def home_page(hub: Hub, request: Request, who: Token | None) -> Response:
    items = "".join(
        f'<li><a href="/{e(r.owner)}/{e(r.name)}">{e(r.full_name)}</a>'
        f'{" <span class=badge>private</span>" if r.private else ""} <span class="muted">{e(r.description)}</span></li>'
        for r in hub.visible(who)
    )
    body = f"<h1>Repositories</h1><ul class=repos>{items or '<li>None you can see yet.</li>'}</ul>"
    return page("repositories", body, who)


def repo_page(
    hub: Hub, request: Request, who: Token | None, owner: str, name: str, ref: str | None, page_no: int
) -> Response:
    info = hub.access(who, owner, name, "read")
    return page(info.full_name, repo_body(hub, info, hub.open(info), ref, page_no), who)


def commit_page(hub: Hub, request: Request, who: Token | None, owner: str, name: str, cid: str) -> Response:
    info = hub.access(who, owner, name, "read")
    repo = hub.open(info)
    c = repo.read_commit(repo.resolve(cid))
    parent = c.parents[0] if c.parents else None
    parents = "".join(
        f' · parent <a href="/{e(owner)}/{e(name)}/commit/{p}"><code>{short(p)}</code></a>' for p in c.parents
    )
    head = (
        f'<h1><a href="/{e(owner)}/{e(name)}">{e(info.full_name)}</a> · commit <code>{short(c.id)}</code></h1>'
        f'<p class="message">{e(c.message)}</p><p class="muted">{e(c.author)}, {when(c.time)}{parents}</p>'
    )
    old, new = repo.table_at(parent), repo.table_at(c.id)  # a root commit: from the empty table
    diff = diff_html(info, old, new, dict(diff_tables(old, new)))
    return page(f"commit {short(c.id)}", head + diff, who)


def request_page(
    hub: Hub, request: Request, who: Token | None, owner: str, name: str, number: int, note: str = "", status: int = 200
) -> Response:
    info = hub.access(who, owner, name, "read")
    return page(f"#{number}", request_body(hub, info, who, number, note), who, status)


def request_action(
    hub: Hub, request: Request, who: Token | None, owner: str, name: str, number: int, action: str, text: str
) -> Response:
    """A change request's form: comment, approve, merge or close; back to its page, or the page
    with a note naming the conflicting examples."""
    same_origin(request)
    if who is None:
        raise AuthRequired("sign in first (top right)")
    info = hub.access(who, owner, name, "read" if action == "comment" else "write")
    changes.existing(hub, info, number)
    if action == "comment":
        hub.meta.add_comment(owner, name, number, who.user, changes.check_text(text, "the comment", changes.BODY_MAX))
    elif action == "approve":
        hub.meta.approve(owner, name, number, who.user)
    elif action == "merge":
        result = changes.merge_request(hub, info, who, number)
        if result["result"] == "conflicts":
            ids = ", ".join(c["id"][:12] for c in result["conflicts"])
            note = f"Not merged: {len(result['conflicts'])} example(s) conflict ({ids}). Nothing changed."
            return request_page(hub, request, who, owner, name, number, note, 409)
    elif action == "close":
        changes.close_request(hub, info, number)
    else:
        raise InputError(f"{action!r} is not something a change request does")
    return Response(status_code=303, headers={"Location": f"/{quote(owner)}/{quote(name)}/requests/{number}"})


def add_routes(app: FastAPI, hub: Hub) -> None:
    @app.get("/static/hub.css")
    def css() -> Response:
        return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    @app.get("/")
    def home(request: Request) -> Response:
        return guarded(hub, home_page)(request)

    @app.get("/login")
    def login_form(request: Request) -> Response:
        return page("sign in", LOGIN_FORM, viewer(hub, request))

    @app.post("/login")
    async def login(request: Request) -> Response:
        same_origin(request)
        token = (await form_fields(request)).get("token", "").strip()
        if hub.meta.check_token(token) is None:
            bad = '<h1>Sign in</h1><p class="bad">That token is unknown, expired or revoked.</p>'
            return page("sign in", bad, None, 401)
        resp = Response(status_code=303, headers={"Location": "/"})
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        resp.set_cookie("kiln_token", token, httponly=True, samesite="strict", path="/", secure=secure)
        return resp

    @app.post("/logout")
    def logout(request: Request) -> Response:
        same_origin(request)
        resp = Response(status_code=303, headers={"Location": "/"})
        resp.delete_cookie("kiln_token", path="/")
        return resp

    @app.get("/{owner}/{name}/thumb/{blob}")
    def thumb_route(owner: str, name: str, blob: str, request: Request) -> Response:
        info = hub.access(viewer(hub, request), owner, name, "read")
        repo = hub.open(info)
        data, kind = thumbnail(repo.store, repo.layout.cache, repo.tmp_dir, blob)
        cache = {"Cache-Control": "private, max-age=31536000, immutable"}
        return Response(data, media_type=kind, headers={**cache, **HEADERS})

    @app.get("/{owner}/{name}")
    def repo_route(owner: str, name: str, request: Request, ref: str | None = None, page_no: int = 0) -> Response:
        return guarded(hub, repo_page)(request, owner=owner, name=name, ref=ref, page_no=page_no)

    @app.get("/{owner}/{name}/commit/{cid}")
    def commit_route(owner: str, name: str, cid: str, request: Request) -> Response:
        return guarded(hub, commit_page)(request, owner=owner, name=name, cid=cid)

    @app.get("/{owner}/{name}/requests/{number}")
    def request_route(owner: str, name: str, number: int, request: Request) -> Response:
        return guarded(hub, request_page)(request, owner=owner, name=name, number=number)

    @app.post("/{owner}/{name}/requests/{number}/{action}")
    async def action_route(owner: str, name: str, number: int, action: str, request: Request) -> Response:
        text = (await form_fields(request)).get("body", "")
        act = guarded(hub, request_action)
        # A merge holds the repository lock and reads three tables: not on the event loop.
        return await run_in_threadpool(
            lambda: act(request, owner=owner, name=name, number=number, action=action, text=text)
        )


def repo_body(hub: Hub, info: RepoInfo, repo: Repo, ref: str | None, page_no: int) -> str:
    owner, name = e(info.owner), e(info.name)
    branches = repo.branches()
    branch = ref if ref in branches else (repo.branch_name() if repo.branch_name() in branches else None)
    head = f"<h1>{e(info.full_name)}{' <span class=badge>private</span>' if info.private else ''}</h1>"
    if not branches or branch is None:
        return head + f"<p>Empty: push to it with <code>kiln push</code> to <code>{e(info.full_name)}</code>.</p>"
    table = repo.table_at(branches[branch])
    labels = Counter(str(v) for v in table.cols["label"] if v is not None)
    blist = "".join(
        f'<li><a href="/{owner}/{name}?ref={quote(b)}">{e(b)}</a> <code>{short(c)}</code></li>'
        for b, c in branches.items()
    )
    commits = "".join(
        f'<li><a href="/{owner}/{name}/commit/{c.id}"><code>{short(c.id)}</code> {e(c.message.splitlines()[0] if c.message else "")}</a> '
        f'<span class="muted">{e(c.author)}, {when(c.time)}</span></li>'
        for c in repo.log(branches[branch], n=20)
    )
    reqs = "".join(
        f'<li><a href="/{owner}/{name}/requests/{r["number"]}">#{r["number"]} {e(r["title"])}</a> '
        f'<span class="muted">{e(r["source"])} → {e(r["target"])}, {e(r["state"])}</span></li>'
        for r in hub.meta.requests(info.owner, info.name)[:20]
    )
    start = max(0, page_no) * GALLERY
    cells = "".join(
        f'<figure><img src="/{owner}/{name}/thumb/{table.blobs[i]}" alt="{e(table.ids[i][:12])}" loading="lazy">'
        f"<figcaption>{e(table.cols['label'][i] if table.cols['label'][i] is not None else '—')}</figcaption></figure>"
        for i in range(start, min(len(table), start + GALLERY))
    )
    more = (
        f'<a href="/{owner}/{name}?ref={quote(branch)}&page_no={page_no + 1}">more</a>'
        if start + GALLERY < len(table)
        else ""
    )
    return (
        head
        + f'<p class="muted">{e(info.description)}</p><p>On <b>{e(branch)}</b>: {len(table):,} examples, '
        + f"{sum(labels.values()):,} labeled, {len(labels)} classes.</p>"
        + f'<div class="cols"><section><h2>Labels</h2>{label_chart(labels)}{counts_table(table)}</section>'
        + f"<section><h2>Branches</h2><ul>{blist}</ul><h2>Change requests</h2><ul>{reqs or '<li>None.</li>'}</ul>"
        + f"<h2>Recent commits</h2><ul class=commits>{commits}</ul></section></div>"
        + f'<h2>Gallery</h2><div class="gallery">{cells}</div>{more}'
    )


def request_body(hub: Hub, info: RepoInfo, who: Token | None, number: int, note: str) -> str:
    req = changes.describe(hub, info, number)
    repo = hub.open(info)
    owner, name = e(info.owner), e(info.name)
    base = f"/{owner}/{name}/requests/{number}"
    parts = [
        f'<h1><a href="/{owner}/{name}">{e(info.full_name)}</a> · #{number} {e(req["title"])}</h1>',
        f'<p><span class="state {e(req["state"])}">{e(req["state"])}</span> <b>{e(req["source"])}</b> → '
        f"<b>{e(req['target'])}</b> by {e(req['author'])}, {when(req['created'])}</p>",
    ]
    if note:
        parts.append(f'<p class="bad note">{e(note)}</p>')
    if req["approvals"]:
        parts.append(f'<p class="good">Approved by {", ".join(e(u) for u in req["approvals"])}</p>')
    if req.get("merged_commit"):
        parts.append(
            f'<p>Merged as <a href="/{owner}/{name}/commit/{req["merged_commit"]}"><code>{short(req["merged_commit"])}</code></a></p>'
        )
    if req["diff"] is not None:
        old = repo.table_at(req.get("merge_base"))
        new = repo.table_at(req["source_commit"])
        target = repo.table_at(req["target_commit"])
        parts.append("<h2>Changes</h2>" + diff_html(info, old, new, req["diff"], req["counts"]))
        parts.append(conflicts_html(info, target, req["conflicts"]))
    comments = "".join(
        f'<li><b>{e(c["author"])}</b> <span class="muted">{when(c["created"])}</span><p>{e(c["body"])}</p></li>'
        for c in req["comments"]
    )
    parts.append(f"<h2>Comments</h2><ul class=comments>{comments or '<li>None yet.</li>'}</ul>")
    if who is not None:
        parts.append(
            f'<form method="post" action="{base}/comment" class="card"><textarea name="body" required '
            'placeholder="Comment"></textarea><button>Comment</button></form>'
        )
        if req["state"] == "open":
            ready = "mergeable" if req.get("mergeable") else "has conflicts or nothing to merge"
            parts.append(
                '<div class="actions">'
                f'<form method="post" action="{base}/approve"><button>Approve</button></form>'
                f'<form method="post" action="{base}/merge"><button class="primary" id="merge">Merge</button></form>'
                f'<form method="post" action="{base}/close"><button>Close</button></form>'
                f'<span class="muted">{ready}</span></div>'
            )
    return "".join(parts)
