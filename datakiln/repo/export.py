"""Export a table to files other tools read: Parquet (one file per split) or an image folder.

Both are written into a temp directory next to the target and renamed into place, so an
interrupted export leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

from ..errors import CorruptObject, InputError
from ..sources.images import EXTENSIONS
from ..sources.labels import check_label
from ..store.fsutil import fsync_dir
from ..store.objects import ObjectStore
from .table import ID_HEX, SPLITS, Table

FORMATS = ("parquet", "folder")
UNLABELED_DIR = "_unlabeled"


def export(store: ObjectStore, table: Table, out: Path, *, format: str = "parquet") -> Path:
    """Write ``table`` (images from ``store``) to the new directory ``out``."""
    if format not in FORMATS:
        raise InputError(f"export format {format!r} is not one of: {', '.join(FORMATS)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not an empty directory; choose a new path")
    tmp = out.parent / f".{out.name}.kiln-export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if format == "parquet":
            _parquet(store, table, tmp)
        else:
            _folder(store, table, tmp)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _parquet(store: ObjectStore, table: Table, tmp: Path) -> None:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise InputError("Parquet export needs pyarrow; install it with 'pip install pyarrow'") from None
    metas = table.meta_names()
    for split in SPLITS:
        rows = [i for i in range(len(table)) if table.cols["split"][i] == split]
        if not rows:
            continue
        c = table.cols
        cols = {
            "id": [table.ids[i] for i in rows],
            "name": [c["name"][i] for i in rows],
            "label": [c["label"][i] for i in rows],
            "split": [split] * len(rows),
            "source": [c["source"][i] for i in rows],
            "time": [c["time"][i] for i in rows],
            "blob": [table.blobs[i] for i in rows],
            "format": [c["format"][i] for i in rows],
            "width": [c["width"][i] for i in rows],
            "height": [c["height"][i] for i in rows],
            # {bytes, path}: the layout Hugging Face datasets reads as an Image feature.
            "image": [{"bytes": store.get(table.blobs[i]), "path": c["name"][i]} for i in rows],
        }
        for m in metas:
            cols["meta_" + m] = [c["meta:" + m][i] for i in rows]
        pq.write_table(pa.table(cols), tmp / f"{split}.parquet")


def _relative_path(eid: str, split: object, label: object, fmt: object) -> str:
    """``<split>/<label>/<id>.<ext>``, every part checked: they come from objects on disk, and a
    forged one (a label ``../../x``, an id with a slash) must not write outside the export."""
    where = f"example {eid[:32]!r}"
    if not (len(eid) == ID_HEX and all(ch in "0123456789abcdef" for ch in eid)):
        raise CorruptObject(f"{where} has an id that is not {ID_HEX} hex digits; run 'kiln fsck'")
    if split not in SPLITS or fmt not in EXTENSIONS:
        raise CorruptObject(f"{where} has split {split!r} and format {fmt!r}; run 'kiln fsck'")
    folder = UNLABELED_DIR if label is None else check_label(str(label), where)
    return f"{split}/{folder}/{eid}{EXTENSIONS[str(fmt)]}"


def _folder(store: ObjectStore, table: Table, tmp: Path) -> None:
    """``<split>/<label>/<id>.<ext>`` plus ``manifest.csv`` (re-importable with --manifest)."""
    c = table.cols
    metas = table.meta_names()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "split", "id", "source", *metas])
    for i, eid in enumerate(table.ids):
        label = c["label"][i]
        rel = _relative_path(eid, c["split"][i], label, c["format"][i])
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(store.get(table.blobs[i]))
        w.writerow(
            [rel, label or "", c["split"][i], eid, c["source"][i] or "", *[c["meta:" + m][i] or "" for m in metas]]
        )
    (tmp / "manifest.csv").write_text(buf.getvalue())
