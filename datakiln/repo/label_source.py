"""Label sources: who or what made a label, stored beside it in every row.

* ``import``: the label came with the file (its class folder, or the manifest's label column);
* ``human:<name>``: a person set or confirmed it (``kiln label``, ``keep``, ``accept``);
* ``model:<build id>``: a build suggested it (``kiln seed``). A suggestion is not a decision:
  training, label issues and the queues treat the example as unlabeled until a person accepts it.

Every place that makes or reads a label source goes through this module.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import BadLabel, InputError

IMPORT = "import"
KINDS = ("import", "human", "model")  # "other" for anything else a foreign tool wrote
NAME_MAX = 100  # characters of a person's name: a name, not a paragraph
_BUILD = re.compile(r"[0-9a-f]{1,64}")


def human(name: str) -> str:
    """The label source of a person's label."""
    return f"human:{check_person(name, 'the user name')}"


def model(build: str) -> str:
    """The label source of a build's suggestion."""
    if not _BUILD.fullmatch(build):
        raise InputError(f"build id {build[:80]!r} is not 1-64 lowercase hex digits")
    return f"model:{build}"


def kind(source: str | None) -> str | None:
    """``import``, ``human``, ``model``, ``other``, or None for no label."""
    if source is None:
        return None
    head = source.split(":", 1)[0]
    return head if head in KINDS else "other"


def is_suggestion(source: str | None) -> bool:
    """A build's suggestion, not yet a person's decision."""
    return source is not None and source.startswith("model:")


def undecided(label: object, source: object) -> bool:
    """No label a person stands behind: none at all, or only a model's suggestion."""
    return label is None or is_suggestion(None if source is None else str(source))


def build_of(source: str | None) -> str | None:
    """The build id a suggestion names, else None."""
    return source[len("model:") :] if is_suggestion(source) and source is not None else None


def check(source: str) -> str:
    """``source`` if it is one of the three forms (a source given from outside: ``--by``, undo)."""
    if source == IMPORT:
        return source
    head, _, rest = source.partition(":")
    if head == "human" and rest:
        check_person(rest, f"label source {source[:80]!r}")
        return source
    if head == "model" and _BUILD.fullmatch(rest):
        return source
    raise InputError(f"label source {source[:80]!r} is not import, human:NAME or model:BUILD")


def check_person(name: str, where: str) -> str:
    """A person's name (an author, ``KILN_USER``, ``human:<name>``): printed by ``kiln log``, so no
    control characters (a terminal escape) and not empty or huge."""
    bad = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})
    if bad:
        raise BadLabel(f"{where} {name[:80]!r} contains control characters ({', '.join(bad[:5])}); remove them")
    if not name.strip() or len(name) > NAME_MAX:
        raise BadLabel(f"{where} {name[:80]!r} must be 1 to {NAME_MAX} characters; set another (--author, KILN_USER)")
    return name
