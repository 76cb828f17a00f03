"""Label rules and label files: what a label (and any text stored beside it) may contain, and the
CSV files that carry labels and manifests into a repository.

A label becomes a folder name on export and is printed by every command, so control and
formatting characters, slashes and surrounding spaces are refused, not cleaned. CSV is read as
CSV (quoted commas and quotes), but a quoted line break is refused like any control character:
a label ``"ca\\nt"`` is a mistake, never a class.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from ..errors import BadLabel, BadManifest

MAX_LABEL_LEN = 200
CSV_FIELD_MAX = 131_072  # csv's own limit, named: a longer value is an error message, not a traceback


def _bad_chars(text: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")]


def check_label(label: str, where: str) -> str:
    if label in _GOOD_LABELS:
        return label
    label = _check_label(label, where)
    if len(_GOOD_LABELS) < 10_000:
        _GOOD_LABELS.add(label)
    return label


# Labels repeat a lot (a class name per row); remember the ones already checked.
_GOOD_LABELS: set[str] = set()


def _check_label(label: str, where: str) -> str:
    """Return the label in NFC form, or raise ``BadLabel`` saying what is wrong and where."""
    label = unicodedata.normalize("NFC", label)
    bad = _bad_chars(label)
    if bad:
        raise BadLabel(f"{where}: label {label!r} contains control characters ({', '.join(bad[:5])}); remove them")
    if not label.strip():
        raise BadLabel(f"{where}: the label is empty; give a class name (or leave the example unlabeled)")
    if label != label.strip():
        raise BadLabel(f"{where}: label {label!r} has leading or trailing spaces; remove them")
    if "/" in label or "\\" in label or label in (".", ".."):
        raise BadLabel(
            f"{where}: label {label!r} may not contain '/' or '\\' or be '.'/'..' (labels become folder names on export)"
        )
    if len(label) > MAX_LABEL_LEN:
        raise BadLabel(f"{where}: label is {len(label)} characters; the limit is {MAX_LABEL_LEN}")
    return label


def check_text(value: str, where: str) -> str:
    """Metadata values and names: any text without control characters."""
    if value.isascii() and value.isprintable():
        return value
    value = unicodedata.normalize("NFC", value)
    bad = _bad_chars(value)
    if bad:
        raise BadLabel(f"{where}: value {value!r} contains control characters ({', '.join(bad[:5])}); remove them")
    return value


def read_text(path: Path, *, bom: bool = True, nul: bool = False) -> str:
    """A text file's content as UTF-8 (a leading BOM dropped); every failure a ``BadManifest``.
    NUL bytes mean a binary file, unless ``nul`` (a label file: its label check names them)."""
    try:
        text = path.read_text(encoding="utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as e:
        raise BadManifest(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from None
    except OSError as e:
        raise BadManifest(f"{path}: cannot be read ({e.strerror or e}); pass a CSV or JSONL file") from None
    if "\0" in text and not nul:
        raise BadManifest(f"{path}: contains NUL bytes; is it really a text file?")
    return text


def csv_rows(path: Path, *, nul: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every row of a CSV file, the header first; blank rows skipped.

    Quoted values may hold commas and quotes, not line breaks: a value that spans lines is refused
    by name, where a line-by-line reader would have glued its lines together."""
    text = read_text(path, nul=nul)
    quoted = '"' in text  # only a quoted value can hold a line break: skip the check without quotes
    reader = csv.reader(io.StringIO(text, newline=""))
    lineno = 1
    try:
        for fields in reader:
            if quoted and any("\n" in f or "\r" in f for f in fields):
                raise BadManifest(
                    f"{path} line {lineno}: a quoted value spans lines; labels and metadata cannot hold line breaks"
                )
            if fields:
                yield lineno, fields
            lineno = reader.line_num + 1
    except csv.Error as e:
        raise BadManifest(
            f"{path} line {reader.line_num}: not valid CSV ({e}); values are limited to "
            f"{CSV_FIELD_MAX:,} characters and quotes must be closed"
        ) from None


def read_label_file(path: Path) -> list[tuple[str, str | None]]:
    """Rows of a CSV with header ``id,label``; duplicate ids and malformed rows are errors."""
    if not path.is_file():
        raise BadManifest(f"{path}: no such file; pass a CSV with columns id,label")
    rows = csv_rows(path, nul=True)
    first = next(rows, None)
    if first is None or [h.strip() for h in first[1]] != ["id", "label"]:
        found = ",".join(first[1]) if first else "nothing"
        raise BadManifest(f"{path}: the first line must be the header 'id,label' (found {found!r})")
    out: list[tuple[str, str | None]] = []
    seen: dict[str, int] = {}
    for lineno, fields in rows:
        if len(fields) != 2:
            raise BadManifest(
                f"{path} line {lineno}: {len(fields)} fields; expected 2 (id,label); quote labels that contain commas"
            )
        eid, label = fields[0].strip(), fields[1]
        if eid in seen:
            raise BadManifest(
                f"{path} line {lineno}: id {eid!r} already appears on line {seen[eid]}; keep one line per example"
            )
        seen[eid] = lineno
        out.append((eid, check_label(label, f"{path} line {lineno}") if label != "" else None))
    return out
