"""The hub's side of the transfer protocol (docs/hub.md), over one hosted ``Repo``; the web layer
(``hub.app``) only checks who asks and moves bytes.

- refs: every branch and tag with its commit, and the default branch.
- fetch: the client names the refs it wants (all by default) and the commits it has; the answer
  is a framed header (the refs) and a transfer pack of exactly the objects it lacks.
- objects: the objects named by id (a partial clone filling in images).
- push: a framed header of ref updates, each naming the value the client saw (compare-and-swap),
  and a transfer pack. Objects are checked (hash, form, completeness) in a temp pack and published
  before any ref moves; refs move under the repository lock, fast-forward only unless forced.
"""

from __future__ import annotations

from typing import Any, BinaryIO, TypedDict

from ..errors import InputError, KilnError, PermissionDenied
from ..repo import Repo, history
from ..repo.transfer import objects_to_send, receive_checked
from ..store import wire
from ..store.codec import is_oid
from ..store.refs import valid_ref

OBJECTS_MAX = 200_000  # ids in one objects request: a client asks in batches
HAVE_MAX = 10_000  # commits a client may say it has


class RefUpdate(TypedDict):
    ref: str
    old: str | None
    new: str
    force: bool


class RefResult(TypedDict):
    ref: str
    status: str  # ok | rejected | up-to-date
    reason: str


def advertise(repo: Repo) -> dict[str, Any]:
    """Every branch and tag, and the default branch (what HEAD names)."""
    refs = {f"refs/heads/{k}": v for k, v in repo.branches().items()}
    refs.update({f"refs/tags/{k}": v for k, v in repo.tags().items()})
    return {"refs": refs, "head": repo.branch_name()}


def _ids(value: object, what: str, limit: int) -> list[str]:
    if not isinstance(value, list) or len(value) > limit or not all(is_oid(v) for v in value):
        raise InputError(f"{what} must be a list of at most {limit:,} object ids (64 lowercase hex digits)")
    return list(value)


def up_to_date(repo: Repo, request: Any) -> dict[str, Any] | None:
    """The header of a fetch that brings nothing (the client has every wanted ref's commit), or
    None if there is something to send (``plan_fetch``)."""
    if not isinstance(request, dict) or request.get("want") is not None:
        return None
    have = request.get("have")
    if not isinstance(have, list) or not all(isinstance(h, str) for h in have):
        return None  # plan_fetch names what is wrong with it
    ad = advertise(repo)
    if not set(ad["refs"].values()) <= set(have):
        return None
    return {"refs": ad["refs"], "head": ad["head"], "objects": 0, "commits": 0}


def plan_fetch(repo: Repo, request: Any) -> tuple[dict[str, Any], list[str]]:
    """(the header to send: refs; the objects to send) for a fetch request."""
    if not isinstance(request, dict):
        raise InputError("a fetch request is a JSON object with 'want', 'have' and 'images'")
    ad = advertise(repo)
    want = request.get("want")
    refs: dict[str, str] = ad["refs"]
    if want is not None:
        if not isinstance(want, list) or not all(isinstance(w, str) and valid_ref(w) for w in want):
            raise InputError("'want' must list ref names like refs/heads/main")
        refs = {r: refs[r] for r in want if r in refs}
    have = _ids(request.get("have", []), "'have'", HAVE_MAX)
    images = request.get("images", True) is not False
    objects, new = objects_to_send(repo.store, list(dict.fromkeys(refs.values())), have, blobs=images)
    header = {"refs": refs, "head": ad["head"], "objects": len(objects), "commits": len(new)}
    return header, objects


def plan_objects(repo: Repo, request: Any) -> list[str]:
    """The ids of an objects request this repository has (a client asks for images it lacks)."""
    ids = _ids(request.get("ids") if isinstance(request, dict) else None, "'ids'", OBJECTS_MAX)
    return [o for o in ids if repo.store.has(o)]


def _updates(header: Any) -> list[RefUpdate]:
    raw = header.get("updates") if isinstance(header, dict) else None
    if not isinstance(raw, list) or not raw or len(raw) > 1000:
        raise InputError("a push header is {'updates': [{'ref', 'old', 'new', 'force'}, ...]} with 1-1000 updates")
    out: list[RefUpdate] = []
    for u in raw:
        if not isinstance(u, dict):
            raise InputError("each push update is an object with 'ref', 'old', 'new' and 'force'")
        ref, old, new = u.get("ref"), u.get("old"), u.get("new")
        if not isinstance(ref, str) or not valid_ref(ref) or ref.startswith("refs/remotes/"):
            raise InputError(
                f"ref {str(ref)[:80]!r} cannot be pushed; push refs/heads/NAME or refs/tags/NAME "
                "(no '..', no control characters)"
            )
        if not is_oid(new) or (old is not None and not is_oid(old)):
            raise InputError(f"the update of {ref} must name commit ids ('new', and 'old' or null)")
        out.append({"ref": ref, "old": old, "new": str(new), "force": u.get("force") is True})
    return out


def receive_push(repo: Repo, body: BinaryIO, *, may_force: bool, limit: int) -> list[RefResult]:
    """Apply a push: check and publish its objects, then move each ref by compare-and-swap."""
    updates = _updates(wire.read_frame(body, "the push"))
    if any(u["force"] for u in updates) and not may_force:
        raise PermissionDenied("a forced push needs the admin role on this repository; push without --force")
    incoming = wire.receive(repo.store, body, limit=limit, where="the pushed pack")
    tips = [u["new"] for u in updates]
    receive_checked(repo.store, incoming, tips)
    for u in updates:
        history.read_commit(repo.store, u["new"])  # a commit, not another kind of object
    return [_move(repo, u) for u in updates]


def _move(repo: Repo, u: RefUpdate) -> RefResult:
    ref, old, new = u["ref"], u["old"], u["new"]
    with repo.lock:
        current = repo.refs.read(ref)
        if current == new:
            return {"ref": ref, "status": "up-to-date", "reason": ""}
        if current != old:
            return _rejected(
                ref, f"it is at {(current or 'nothing')[:12]} on the hub, not {(old or 'nothing')[:12]}: fetch first"
            )
        if current is not None and not u["force"]:
            if ref.startswith("refs/tags/"):
                return _rejected(ref, "tags do not move; push a new tag, or --force")
            if not history.is_ancestor(repo.store, current, new):
                return _rejected(ref, "not a fast-forward: pull (fetch and merge) first, or --force")
        try:
            repo.refs.update(ref, new, current)
        except KilnError as e:
            return _rejected(ref, str(e))
        except OSError:  # refs/heads/a beside refs/heads/a/b: a file cannot also be a folder
            return _rejected(
                ref, "its name clashes with an existing branch or tag (one is a prefix folder of the other)"
            )
        _default_branch(repo, ref)
    return {"ref": ref, "status": "ok", "reason": ""}


def _rejected(ref: str, reason: str) -> RefResult:
    return {"ref": ref, "status": "rejected", "reason": reason}


def _default_branch(repo: Repo, ref: str) -> None:
    """A hub repository's first branch becomes its default (HEAD), whatever its name."""
    head_ref, head = repo.head()
    if head is None and ref.startswith("refs/heads/") and head_ref != ref:
        repo.refs.set_head(ref=ref)
