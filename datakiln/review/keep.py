"""Keeping a given label (a reviewer says the suspect is right) and undoing a review decision."""

from __future__ import annotations

from typing import TypedDict

from ..repo import Repo, label_source


class Decision(TypedDict):
    """A labelling decision: the example and the label it has now."""

    id: str
    label: str


def keep(repo: Repo, ids: list[str], *, expect: dict[str, str | None] | None = None) -> list[Decision]:
    """Confirm the current labels of ``ids`` as the user's: staged as human labels, and no longer
    flagged as suspected errors while they keep that label (``Repo.keep``)."""
    return [{"id": e, "label": lab} for e, lab in repo.keep(ids, expect=expect)]


def restore(
    repo: Repo,
    example: str,
    label: str | None,
    source: str | None,
    *,
    was_kept: str | None = None,
    expect: dict[str, str | None] | None = None,
) -> None:
    """Put back an example's label, label source and keep mark as they were (undo of a review
    decision). Restoring what HEAD has removes the staged edit instead of staging a copy.
    ``expect`` is the {id: label the undone decision set}: if someone changed it since, nothing
    is undone."""
    if source is not None:
        label_source.check(source)
    with repo.lock:
        (eid,) = repo.label_many([(example, label)], by=source if label is not None else None, expect=expect)
        repo.set_kept(eid, was_kept)
