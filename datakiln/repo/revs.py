"""Revisions and example ids as users type them: ``HEAD~2``, ``main^2``, ``v1``, ``3f2a9c``."""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Callable, Iterable

from ..errors import (
    AmbiguousExample,
    AmbiguousRevision,
    ExampleNotFound,
    RevisionNotFound,
)

_SUFFIX = re.compile(r"(~\d*|\^\d*)")
MIN_PREFIX = 4


def split_rev(rev: str) -> tuple[str, list[tuple[str, int]]]:
    """``main~2^2`` -> ("main", [("~", 2), ("^", 2)])."""
    m = re.search(r"[~^]", rev)
    base, rest = (rev, "") if m is None else (rev[: m.start()], rev[m.start() :])
    steps = []
    pos = 0
    for tok in _SUFFIX.finditer(rest):
        if tok.start() != pos:
            raise RevisionNotFound(f"revision {rev!r} is malformed; use forms like HEAD, main~2, HEAD^2, a1b2c3d")
        kind, num = tok.group()[0], tok.group()[1:]
        steps.append((kind, int(num) if num else 1))
        pos = tok.end()
    if pos != len(rest) or not base:
        raise RevisionNotFound(f"revision {rev!r} is malformed; use forms like HEAD, main~2, HEAD^2, a1b2c3d")
    return base, steps


def walk_steps(rev: str, cid: str, steps: list[tuple[str, int]], parents: Callable[[str], list[str]]) -> str:
    for kind, n in steps:
        if kind == "~":
            for _ in range(n):
                ps = parents(cid)
                if not ps:
                    raise RevisionNotFound(f"{rev}: history is not that long (commit {cid[:12]} has no parent)")
                cid = ps[0]
        else:
            if n == 0:
                continue
            ps = parents(cid)
            if len(ps) < n:
                raise RevisionNotFound(f"{rev}: commit {cid[:12]} has {len(ps)} parent(s), not {n}")
            cid = ps[n - 1]
    return cid


def not_found(rev: str, names: Iterable[str]) -> RevisionNotFound:
    close = difflib.get_close_matches(rev, list(names), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; see 'kiln log' and 'kiln branch'"
    return RevisionNotFound(f"revision {rev!r} not found{hint}")


class IdIndex:
    """Sorted example ids for resolving unique prefixes, as git does for commit ids."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.sorted = sorted(ids)

    def find(self, prefix: str) -> str:
        p = example_prefix(prefix)
        i = bisect.bisect_left(self.sorted, p)
        hits: list[str] = []
        while i < len(self.sorted) and self.sorted[i].startswith(p) and len(hits) < 5:
            hits.append(self.sorted[i])
            i += 1
        return one_example(prefix, hits)


def example_prefix(prefix: str) -> str:
    """An example id prefix as typed, normalised, or ``ExampleNotFound`` saying what one is."""
    p = prefix.strip().lower()
    if not MIN_PREFIX <= len(p) <= 32 or not re.fullmatch(r"[0-9a-f]+", p):
        raise ExampleNotFound(
            f"example id {prefix!r} is not valid; give at least {MIN_PREFIX} hex digits of an id shown by 'kiln ls'"
        )
    return p


def one_example(prefix: str, hits: list[str]) -> str:
    """The one id a prefix matched (``hits``: up to a few), or the error saying why not."""
    if not hits:
        raise ExampleNotFound(f"no example with id {prefix!r} in the working table; see 'kiln ls' for ids")
    if len(hits) > 1:
        raise AmbiguousExample(
            f"example id {prefix!r} is ambiguous ({', '.join(h[:12] for h in hits)}, ...); type more digits"
        )
    return hits[0]


def ambiguous(rev: str, hits: list[str]) -> AmbiguousRevision:
    return AmbiguousRevision(
        f"commit id {rev!r} is ambiguous ({', '.join(h[:12] for h in hits[:5])}); type more digits"
    )
