"""Sources: turn an image folder or a manifest into candidates (name, file, label, split, meta).

Nothing here reads image bytes; ``datakiln.repo.importer`` checks and stores the candidates.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadManifest, InputError
from .labels import check_label, check_text, csv_rows, read_text

SPLIT_NAMES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
RESERVED = {"path", "label", "split", "id"}


@dataclass
class Candidate:
    name: str  # the example's name in the repository (a relative POSIX path)
    path: str | None  # file to read, or None when ``data`` holds the bytes
    # A directory the file must stay inside after symlinks are resolved (manifests).
    within: str | None = None
    label: str | None = None
    split: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None


def _walk(root: str) -> list[str]:
    """Relative POSIX paths of everything under ``root`` that is not a folder, sorted like paths
    (by part); hidden names (.DS_Store, .git, .kiln, ...) skipped. Links, pipes and devices are
    listed too: the importer reports them by name instead of dropping them silently. Strings and
    ``os.scandir``, not ``pathlib``: this runs once per file of a 100,000-image folder."""
    out: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        folder = root + "/" + rel if rel else root
        try:
            with os.scandir(folder) as it:
                for e in it:
                    if e.name.startswith("."):
                        continue
                    path = rel + "/" + e.name if rel else e.name
                    if e.is_dir(follow_symlinks=False):
                        stack.append(path)
                    else:
                        out.append(path)
        except OSError as e:
            raise InputError(f"{folder}: cannot list the folder ({e.strerror or e}); check its permissions") from None
    out.sort(key=lambda p: p.split("/"))
    return out


def scan_folder(root: Path) -> list[Candidate]:
    """Class-per-subfolder layout: ``root/<label>/...``; files directly in ``root`` are unlabeled.

    If every top-level folder is a split name (train/valid/val/test), the layout is
    ``root/<split>/<label>/...``. Folders below the label become the ``folder`` metadata column.
    A link that leads outside ``root`` is refused when the file is read, as in a manifest.
    """
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; pass a folder of images, or --manifest FILE for a CSV/JSONL")
    base = str(root)
    within = os.path.abspath(base)
    files = _walk(base)
    tops = {rel.split("/", 1)[0] for rel in files if "/" in rel}
    by_split = bool(tops) and all(t.lower() in SPLIT_NAMES for t in tops)
    out = []
    for rel in files:
        path = os.path.join(base, rel)
        check_text(rel, path)
        parts = rel.split("/")
        split = None
        if by_split and len(parts) > 1:
            split, parts = SPLIT_NAMES[parts[0].lower()], parts[1:]
        label = check_label(parts[0], path) if len(parts) > 1 else None
        meta = {"folder": "/".join(parts[1:-1])} if len(parts) > 2 else {}
        out.append(Candidate(name=rel, path=path, label=label, split=split, meta=meta, within=within))
    return out


def _safe_path(base: str, raw: str, where: str) -> tuple[str, str]:
    """The example name and file path for a manifest's relative ``raw`` path, or ``BadManifest``.

    String operations, not pathlib: a manifest has one row per image, and this runs 100,000 times.
    """
    if not raw:
        raise BadManifest(f"{where}: the path is empty; give a path relative to the manifest's folder")
    check_text(raw, where)
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
        raise BadManifest(f"{where}: path {raw!r} is absolute; paths must be relative to the manifest's folder")
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadManifest(f"{where}: path {raw!r} contains '..'; paths must stay inside the manifest's folder")
    if not parts:
        raise BadManifest(f"{where}: path {raw!r} names the manifest's folder, not a file; give an image's path")
    # Escapes through symlinks are caught when the file is read (importer.check_one), in parallel.
    name = "/".join(parts)
    return name, base + os.sep + name


def _row(base: str, rec: dict[str, str], where: str) -> Candidate:
    name, full = _safe_path(base, (rec.get("path") or "").strip(), where)
    raw_label = rec.get("label")
    label = check_label(raw_label, where) if raw_label not in (None, "") else None
    split = None
    raw_split = (rec.get("split") or "").strip()
    if raw_split:
        split = SPLIT_NAMES.get(raw_split.lower())
        if split is None:
            raise BadManifest(f"{where}: split {raw_split!r} is not one of train, valid, test (or leave it empty)")
    meta = {
        k: check_text(v, f"{where} column {k!r}") for k, v in rec.items() if k not in RESERVED and v not in (None, "")
    }
    return Candidate(name=name, path=full, label=label, split=split, meta=meta, within=base)


def _check_header(header: list[str], manifest: Path) -> None:
    if "path" not in header:
        raise BadManifest(
            f"{manifest}: no 'path' column (header is {','.join(header)!r}); the first line must name the "
            "columns, e.g. path,label[,split][,metadata...]"
        )
    seen = set()
    for h in header:
        if not h:
            raise BadManifest(f"{manifest}: the header has an empty column name; name every column")
        if h in seen:
            raise BadManifest(f"{manifest}: column {h!r} appears twice in the header; rename one")
        seen.add(h)
        check_text(h, f"{manifest} header")


def scan_csv(manifest: Path) -> list[Candidate]:
    base = os.path.abspath(manifest.parent)
    rows = csv_rows(manifest)
    first = next(rows, None)
    if first is None:
        raise BadManifest(f"{manifest}: the file is empty; it needs a header line path,label[,split,...]")
    header = [h.strip() for h in first[1]]
    _check_header(header, manifest)
    out = []
    for lineno, fields in rows:
        if len(fields) != len(header):
            raise BadManifest(
                f"{manifest} line {lineno}: {len(fields)} fields, but the header names {len(header)} "
                f"({','.join(header)}); quote values that contain commas"
            )
        out.append(_row(base, dict(zip(header, fields)), f"{manifest} line {lineno}"))
    return _no_duplicates(out, manifest)


def scan_jsonl(manifest: Path) -> list[Candidate]:
    base = os.path.abspath(manifest.parent)
    out = []
    for lineno, line in enumerate(read_text(manifest, bom=False).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{manifest} line {lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadManifest(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from None
        except (ValueError, RecursionError) as e:  # integers of thousands of digits, deep nesting
            raise BadManifest(
                f"{where}: a JSON value is too large or too deeply nested ({e}); use flat objects"
            ) from None
        if not isinstance(rec, dict) or "path" not in rec:
            raise BadManifest(
                f'{where}: expected an object with a "path" key, e.g. {{"path": "a.png", "label": "cat"}}'
            )
        for k, v in rec.items():
            if v is not None and not isinstance(v, (str, int, float, bool)):
                raise BadManifest(f"{where}: key {k!r} holds a {type(v).__name__}; values must be strings or numbers")
        out.append(_row(base, {k: ("" if v is None else str(v)) for k, v in rec.items()}, where))
    return _no_duplicates(out, manifest)


def _no_duplicates(cands: list[Candidate], manifest: Path) -> list[Candidate]:
    seen: dict[str, int] = {}
    for i, c in enumerate(cands):
        if c.name in seen:
            raise BadManifest(
                f"{manifest}: path {c.name!r} is listed twice (entries {seen[c.name] + 1} and {i + 1}); keep one"
            )
        seen[c.name] = i
    return cands


def scan_manifest(manifest: Path) -> list[Candidate]:
    if not manifest.is_file():
        raise InputError(f"{manifest}: no such file; pass a .csv or .jsonl manifest")
    if manifest.suffix.lower() in (".jsonl", ".ndjson"):
        return scan_jsonl(manifest)
    return scan_csv(manifest)
