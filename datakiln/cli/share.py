"""``kiln hub``, ``login``, ``logout``, ``remote``, ``clone``, ``fetch``, ``pull``, ``push``, ``request``:
sharing a repository through a hub. Thin: each calls ``datakiln.hub``, ``Repo`` or ``store.remote``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..progress import Progress
from ..store.credentials import origin, store_token
from ..store.remote import Remote
from .base import command, out_json, repo, short, shown, when

HUB_ROOT_ENV = "KILN_HUB_ROOT"


# ---- kiln hub ----------------------------------------------------------------------------------
def _hub_root(a: argparse.Namespace) -> Path:
    root = a.root or os.environ.get(HUB_ROOT_ENV)
    if not root:
        raise InputError(f"say where the hub keeps its data: --root DIR (or ${HUB_ROOT_ENV})")
    return Path(root)


def _hub_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="hub_command", metavar="ACTION", required=True)
    root_help = f"the hub's data directory (default: ${HUB_ROOT_ENV})"
    s = sub.add_parser("serve", help="run the hub: many repositories, one process")
    s.add_argument("--root", help=root_help)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8900, help="port (default: 8900; 0 for any free port)")
    s.add_argument("--max-push", type=int, default=None, metavar="BYTES", help="largest push accepted")
    u = sub.add_parser("user", help="add or list users (on the hub's machine)")
    u.add_argument("action", choices=["add", "list"])
    u.add_argument("name", nargs="?")
    u.add_argument("--admin", action="store_true", help="a hub admin: admin on every repository")
    u.add_argument("--root", help=root_help)
    t = sub.add_parser("token", help="make, list or revoke tokens (on the hub's machine)")
    t.add_argument("action", choices=["add", "list", "revoke"])
    t.add_argument("name", help="user (add, list) or token id (revoke)")
    t.add_argument("--scope", default="read,write", help="comma-separated: read, write, admin (default: read,write)")
    t.add_argument("--days", type=float, default=None, help="expire after this many days (default: never)")
    t.add_argument("--note", default="", help="what the token is for")
    t.add_argument("--root", help=root_help)
    c = sub.add_parser("create", help="create a repository on a hub you are logged in to")
    c.add_argument("repo", metavar="OWNER/NAME")
    c.add_argument("--private", action="store_true", help="only its owner, collaborators and admins see it")
    c.add_argument("--description", default="")
    c.add_argument("--hub", help="the hub's URL (default: the one you logged in to)")
    g = sub.add_parser("grant", help="give a user a role in a repository (none removes it)")
    g.add_argument("repo", metavar="OWNER/NAME")
    g.add_argument("user")
    g.add_argument("role", choices=["read", "write", "admin", "none"])
    g.add_argument("--hub", help="the hub's URL (default: the one you logged in to)")
    gc = sub.add_parser("gc", help="remove unreachable objects and interrupted pushes from every repository")
    gc.add_argument("--root", help=root_help)


@command(
    "hub",
    "kiln hub serve --root /srv/kiln-hub\n  kiln hub user add alice --root /srv/kiln-hub\n  kiln hub create alice/digits --private",
    _hub_args,
)
def cmd_hub(a: argparse.Namespace) -> int | None:
    action = a.hub_command
    if action == "serve":
        from ..hub import serve

        try:
            serve(_hub_root(a), host=a.host, port=a.port, push_max=a.max_push)
        except KeyboardInterrupt:
            pass
        return None
    if action in ("create", "grant"):
        _hub_client(a)
        return None
    from ..hub.hub import Hub

    hub = Hub(_hub_root(a))
    if action == "user":
        _user(hub, a)
        return None
    if action == "token":
        _token(hub, a)
        return None
    for info in hub.meta.repos():
        report = hub.open(info).gc()
        print(f"{info.full_name}: removed {report.removed_objects} object(s), {report.temp_files} temp file(s)")
    return None


def _user(hub: Any, a: argparse.Namespace) -> None:
    if a.action == "list":
        for u in hub.meta.users():
            print(f"{u['name']}{'  (admin)' if u['admin'] else ''}")
        return
    if not a.name:
        raise InputError("name the user: 'kiln hub user add NAME'")
    hub.meta.add_user(a.name, admin=a.admin)
    token = hub.meta.new_token(a.name, ("read", "write", "admin"), days=None, note="first token")
    print(f"added user {a.name}; their token (shown once, give it to them for 'kiln login'):", file=sys.stderr)
    print(token)


def _token(hub: Any, a: argparse.Namespace) -> None:
    if a.action == "revoke":
        if not hub.meta.revoke_token(a.name):
            raise InputError(f"no live token with id {a.name!r}; 'kiln hub token list USER' lists them")
        print(f"revoked token {a.name}")
    elif a.action == "list":
        for t in hub.meta.tokens(a.name):
            state = "revoked" if t["revoked"] else ("expires " + when(t["expires"]) if t["expires"] else "no expiry")
            print(f"{t['id']}  {t['scopes']:<16} made {when(t['created'])}  {state}  {shown(t['note'])}")
    else:
        scopes = tuple(s.strip() for s in a.scope.split(",") if s.strip())
        print(hub.meta.new_token(a.name, scopes, days=a.days, note=a.note))


def _hub_url(a: argparse.Namespace) -> str:
    if a.hub:
        return origin(a.hub)
    from ..store.credentials import known_hubs

    hubs = known_hubs()
    if len(hubs) == 1:
        return hubs[0]
    raise InputError("say which hub: --hub URL" + ("" if hubs else " (and log in to it first: 'kiln login URL')"))


def _hub_client(a: argparse.Namespace) -> None:
    owner, _, name = a.repo.partition("/")
    if not name:
        raise InputError(f"{a.repo!r}: name the repository as OWNER/NAME")
    url = _hub_url(a)
    with Remote(f"{url}/{owner}/{name}") as conn:
        _hub_call(a, conn, url, owner, name)


def _hub_call(a: argparse.Namespace, conn: Remote, url: str, owner: str, name: str) -> None:
    if a.hub_command == "create":
        info = conn.api(
            "POST", "repos", {"owner": owner, "name": name, "private": a.private, "description": a.description}
        )
        kind = "private" if info["private"] else "public"
        print(
            f"created {kind} repository {info['full_name']}: add it with 'kiln remote add origin {url}/{owner}/{name}'"
        )
    else:
        role = None if a.role == "none" else a.role
        conn.api("PUT", conn.repo_api(f"/collaborators/{a.user}"), {"role": role})
        print(f"{a.user} now has {role or 'no'} access to {owner}/{name}")


# ---- login and remotes -------------------------------------------------------------------------
def _login_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="the hub's address, e.g. http://127.0.0.1:8900")
    p.add_argument("--token", help="the token (default: $KILN_TOKEN, else asked for without echo)")


@command("login", "kiln login http://127.0.0.1:8900", _login_args)
def cmd_login(a: argparse.Namespace) -> None:
    token = a.token or os.environ.get("KILN_TOKEN") or getpass.getpass(f"token for {origin(a.url)}: ")
    token = token.strip()
    with Remote(origin(a.url), token=token) as conn:
        who = conn.api("GET", "user")
    path = store_token(a.url, token)
    print(f"logged in to {origin(a.url)} as {who['user']} (scopes: {', '.join(who['scopes'])}); token kept in {path}")


def _logout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="the hub's address")


@command("logout", "kiln logout http://127.0.0.1:8900", _logout_args)
def cmd_logout(a: argparse.Namespace) -> None:
    store_token(a.url, None)
    print(f"forgot the token for {origin(a.url)}")


def _remote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["add", "remove", "list"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("url", nargs="?")


@command("remote", "kiln remote add origin http://127.0.0.1:8900/alice/digits\n  kiln remote", _remote_args)
def cmd_remote(a: argparse.Namespace) -> None:
    r = repo(a)
    if a.action == "add":
        if not (a.name and a.url):
            raise InputError("'kiln remote add NAME URL'")
        r.add_remote(a.name, a.url)
        print(f"added remote {a.name}: {a.url}")
    elif a.action == "remove":
        if not a.name:
            raise InputError("'kiln remote remove NAME'")
        r.remove_remote(a.name)
        print(f"removed remote {a.name}")
    else:
        for name, url in r.remotes().items():
            print(f"{name}\t{url}")


# ---- clone, fetch, pull, push ------------------------------------------------------------------
class _Bar:
    """A progress callback ``(done, total)`` that opens a bar on its first call and closes it at
    the end: the transfer says how much there is only once it starts."""

    def __init__(self, what: str) -> None:
        self.what, self.done = what, 0
        self.bar: Progress | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = Progress(total, self.what)
            self.bar.__enter__()
            self.done = 0
        bar = self.bar
        bar.update(done - self.done)
        self.done = done
        if done >= total:
            bar.__exit__(None, None, None)
            self.bar = None


def _clone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="the hosted repository: http://HOST:PORT/OWNER/NAME")
    p.add_argument("dir", nargs="?", help="where to put it (default: the repository's name)")
    p.add_argument("--labels-only", action="store_true", help="commits and labels now; images when first needed")
    p.add_argument("--json", action="store_true", help="print what was fetched as JSON")


@command("clone", "kiln clone http://127.0.0.1:8900/alice/digits\n  kiln clone --labels-only URL", _clone_args)
def cmd_clone(a: argparse.Namespace) -> None:
    from ..compile.spec import write_default
    from ..repo import Repo

    target = Path(a.C) / (a.dir or a.url.rstrip("/").rsplit("/", 1)[-1])
    r, fetched = Repo.clone(a.url, target, labels_only=a.labels_only, progress=_Bar("receive"))
    write_default(r.root)
    if a.json:
        out_json({**fetched, "path": str(r.root), "branch": r.branch_name()})
        return
    kind = "labels-only clone (images fetched when needed)" if a.labels_only else "clone"
    print(
        f"{kind} of {a.url} in {r.root}: {fetched['objects']:,} objects, {fetched['bytes'] / 1e6:.1f} MB; "
        f"on branch {r.branch_name()}"
    )


def _fetch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("remote", nargs="?", help="remote name (default: origin)")
    p.add_argument("--images", action="store_true", help="in a labels-only clone, fetch the images of HEAD now")
    p.add_argument("--split", help="with --images: only this split")
    p.add_argument("--label", help="with --images: only this label")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("fetch", "kiln fetch\n  kiln fetch --images --split test", _fetch_args)
def cmd_fetch(a: argparse.Namespace) -> None:
    r = repo(a)
    name = a.remote or r.default_remote()
    if a.images:
        table = r.table("HEAD")
        rows = [
            i
            for i in range(len(table))
            if (a.split is None or table.cols["split"][i] == a.split)
            and (a.label is None or table.cols["label"][i] == a.label)
        ]
        got = r.store.ensure(table.blobs[i] for i in rows)
        print(f"fetched {got:,} image(s); {len(rows) - got:,} were here already")
        return
    res = r.fetch(name, progress=_Bar("receive"))
    if a.json:
        out_json(res)
        return
    for branch, (old, new) in res["updated"].items():
        what = "deleted" if new is None else ("new branch" if old is None else f"{short(old)}..{short(new)}")
        print(f"  {name}/{branch}: {what}")
    print(f"fetched {res['objects']:,} object(s), {res['bytes']:,} bytes from {name}")


def _pull_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("remote", nargs="?", help="remote name (default: origin)")
    p.add_argument("branch", nargs="?", help="the remote's branch (default: the current branch's name)")


@command("pull", "kiln pull\n  kiln pull origin main", _pull_args)
def cmd_pull(a: argparse.Namespace) -> int:
    from ..repo.merge import conflict_message

    r = repo(a)
    fetched, merged = r.pull(a.remote or r.default_remote(), a.branch)
    print(
        f"fetched {fetched['objects']:,} object(s); {merged['result']}"
        + (f" at {short(merged['commit'])}" if merged["commit"] else "")
    )
    if merged["result"] == "conflicts":
        print(conflict_message([c["id"] for c in merged["conflicts"]]), file=sys.stderr)
        for c in merged["conflicts"][:50]:
            print(f"  conflict {c['id']}")
        return 1
    return 0


def _push_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("remote", nargs="?", help="remote name (default: origin)")
    p.add_argument("branch", nargs="?", help="branch to push (default: the current one)")
    p.add_argument(
        "--force", action="store_true", help="overwrite the hub's branch even if not a fast-forward (needs admin)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("push", "kiln push origin main\n  kiln push origin fix-cats", _push_args)
def cmd_push(a: argparse.Namespace) -> None:
    r = repo(a)
    res = r.push(a.remote or r.default_remote(), a.branch, force=a.force)
    if a.json:
        out_json(res)
    elif res["status"] == "up-to-date":
        print(f"{res['remote']}/{res['branch']} is up to date")
    else:
        print(
            f"{res['remote']}/{res['branch']}: {short(res['old'])}..{short(res['new'])} ({res['objects']:,} objects sent)"
        )


# ---- change requests ---------------------------------------------------------------------------
def _request_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["open", "list", "show", "comment", "approve", "merge", "close"])
    p.add_argument("number", nargs="?", type=int, help="the request's number (show, comment, approve, merge, close)")
    p.add_argument("--from", dest="source", help="open: the branch with the changes (default: the current one)")
    p.add_argument("--to", dest="target", help="open: the branch to merge into (default: the hub's default)")
    p.add_argument("-m", "--message", help="open: the title; comment: the text")
    p.add_argument("--remote", default=None, help="remote name (default: origin)")
    p.add_argument("--state", choices=["open", "merged", "closed"], help="list: only these")
    p.add_argument("--json", action="store_true", help="print JSON")


@command(
    "request",
    'kiln request open --from fix-cats --to main -m "fix cats labelled dog"\n  kiln request list\n  kiln request merge 3',
    _request_args,
)
def cmd_request(a: argparse.Namespace) -> int:
    r = repo(a)
    with r.remote(a.remote or r.default_remote()) as conn:
        return _request(a, r, conn)


def _request(a: argparse.Namespace, r: Any, conn: Remote) -> int:
    path = conn.repo_api("/requests")
    if a.action == "list":
        res = conn.api("GET", path + (f"?state={a.state}" if a.state else ""))
        if a.json:
            out_json(res)
        for q in res["requests"] if not a.json else []:
            print(
                f"#{q['number']:<4} {q['state']:<7} {shown(q['source'])} -> {shown(q['target'])}  {shown(q['title'])}  ({shown(q['author'])})"
            )
        return 0
    if a.action == "open":
        source = a.source or r.branch_name()
        target = a.target or conn.api("GET", conn.repo_api()).get("head") or "main"
        if not a.message:
            raise InputError("give the request a title: -m TEXT")
        res = conn.api("POST", path, {"source": source, "target": target, "title": a.message})
        return _show_request(res, a.json, opened=True)
    if a.number is None:
        raise InputError(f"'kiln request {a.action} NUMBER'")
    item = f"{path}/{a.number}"
    if a.action == "show":
        return _show_request(conn.api("GET", item), a.json)
    if a.action == "comment":
        if not a.message:
            raise InputError("'kiln request comment N -m TEXT'")
        return _show_request(conn.api("POST", item + "/comments", {"body": a.message}), a.json)
    if a.action in ("approve", "close"):
        return _show_request(conn.api("POST", f"{item}/{a.action}"), a.json)
    return _merge_request(conn, item, a.json)


def _merge_request(conn: Remote, item: str, as_json: bool) -> int:
    from ..errors import StateError

    try:
        res = conn.api("POST", item + "/merge")
    except StateError as e:
        raise StateError(f"{e}; 'kiln request show N' names the conflicting examples") from None
    if as_json:
        out_json(res)
    else:
        print(f"{res['result']}: {short(res['commit'])}")
    return 0


def _show_request(q: dict[str, Any], as_json: bool, opened: bool = False) -> int:
    if as_json:
        out_json(q)
        return 0
    verb = "opened" if opened else q["state"]
    print(f"#{q['number']} {verb}: {shown(q['title'])}")
    print(f"  {shown(q['source'])} -> {shown(q['target'])} by {shown(q['author'])}, {when(q['created'])}")
    if q.get("counts"):
        c = q["counts"]
        print(f"  changes: {c['added']} added, {c['removed']} removed, {c['relabeled']} relabeled")
    if q.get("approvals"):
        print(f"  approved by {', '.join(shown(u) for u in q['approvals'])}")
    for c in q.get("conflicts") or []:
        print(f"  conflict {c['id']}: {_side(c.get('ours'))} vs {_side(c.get('theirs'))}")
    if q["state"] == "open":
        print("  mergeable" if q.get("mergeable") else "  not mergeable as is (conflicts, or nothing to merge)")
    for com in q.get("comments") or []:
        print(f"  {shown(com['author'])}: {shown(com['body'])}")
    return 0


def _side(v: Any) -> str:
    return "(removed)" if v is None else repr(v["label"])
