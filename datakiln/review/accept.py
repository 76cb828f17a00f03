"""Accepting suggestions: a seeded label confirmed as the user's, or a suspected label error
relabelled with the model's suggested label. Staged, for the next commit."""

from __future__ import annotations

from ..compile.records import list_builds
from ..errors import ExampleNotFound
from ..repo import Repo
from ..repo.label_source import is_suggestion
from ..repo.revs import IdIndex
from ..repo.table import Table
from .issues import label_issues
from .keep import Decision


def accept(
    repo: Repo,
    ids: list[str],
    build: str | None = None,
    *,
    suggested: dict[str, str] | None = None,
    expect: dict[str, str | None] | None = None,
) -> list[Decision]:
    """Turn suggestions into decisions: a seeded label (``model:``) is confirmed as the user's; a
    suspected label error takes the model's suggested label. Staged, for the next commit.

    ``suggested`` (example id -> label) saves recomputing the suspects when the caller has them;
    ``expect`` is ``Repo.label_many``'s: the labels the caller saw.
    """
    with repo.lock:  # the suggestions are judged against the labels they replace
        return _accept(repo, ids, build, suggested, expect)


def _accept(
    repo: Repo,
    ids: list[str],
    build: str | None,
    suggested: dict[str, str] | None,
    expect: dict[str, str | None] | None,
) -> list[Decision]:
    work = repo.table()
    index = IdIndex(work.ids)
    full = [index.find(e) for e in ids]
    need_issues = [e for e in full if not is_suggestion(_source(work, e))]
    if suggested is not None:
        need_issues = [e for e in need_issues if e not in suggested]
    suggested = dict(suggested or {})
    if need_issues and not list_builds(repo):
        raise ExampleNotFound(
            f"example {need_issues[0][:12]} has no suggestion to accept: there are no builds yet, so no suspected "
            "label errors; run 'kiln build' and 'kiln issues', or label it with 'kiln label ID LABEL'"
        )
    if need_issues:
        suggested.update({i["id"]: i["suggested"] for i in label_issues(repo, build)})
    pairs = []
    for e in full:
        if is_suggestion(_source(work, e)):
            pairs.append((e, str(work.get(e, "label"))))
        elif e in suggested:
            pairs.append((e, suggested[e]))
        else:
            raise ExampleNotFound(
                f"example {e[:12]} has no suggestion to accept (not seeded, not a suspected label error); "
                "label it with 'kiln label ID LABEL'"
            )
    repo.label_many(pairs, expect=expect)
    return [{"id": e, "label": lab} for e, lab in pairs]


def _source(work: Table, eid: str) -> str | None:
    v = work.get(eid, "source")
    return None if v is None else str(v)
