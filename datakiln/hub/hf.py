"""The read side of the Hugging Face Hub HTTP API for hosted repositories, so that
``huggingface_hub.snapshot_download(repo_id, repo_type="dataset", endpoint=HUB, revision=REV)``
and ``datasets.load_dataset`` work against a kiln hub.

A commit is shown as a dataset repository of four files: ``data/{train,valid,test}.parquet``
(exactly what ``kiln export`` writes: image bytes and path in the ``image`` column, the layout
the ``datasets`` Image feature reads, plus label, split, source and metadata columns) and a
``README.md`` dataset card. Files are made once per commit, into ``ROOT/cache/hf/``, atomically;
a commit never changes, so neither do they (the ETag is their sha256).

Routes: ``GET /api/datasets/OWNER/NAME[/revision/REV]`` (info with ``sha`` and ``siblings``),
``GET /api/datasets/OWNER/NAME/tree/REV[/PATH]`` (the file list ``snapshot_download`` reads),
``GET|HEAD /datasets/OWNER/NAME/resolve/REV/PATH`` (the file, with ``X-Repo-Commit``, ``ETag``
and ``Content-Length``). Access is the hub's: a private repository is 404 without a token.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response

from ..errors import RevisionNotFound
from ..repo import Repo
from ..repo.export import export
from ..store.fsutil import fsync_dir
from ..store.refs import valid_ref
from .hub import Hub
from .meta import RepoInfo

SPLITS = ("train", "valid", "test")
LISTING = ".files.json"  # beside the files: their paths, sizes and sha256, written before the folder appears


def _resolve(repo: Repo, rev: str) -> str:
    """A branch, tag or full commit id (what the HF client sends as ``revision``)."""
    for ref in (f"refs/heads/{rev}", f"refs/tags/{rev}"):
        cid = repo.refs.read(ref) if valid_ref(ref) else None
        if cid:
            return cid
    if len(rev) == 64:
        return repo.resolve(rev)
    raise RevisionNotFound(f"revision {rev[:80]!r} is not a branch, tag or full commit id of this repository")


def files_of(hub: Hub, info: RepoInfo, repo: Repo, commit: str) -> Path:
    """The folder of a commit's files (``data/*.parquet``, ``README.md``), made now if needed."""
    out = hub.root / "cache" / "hf" / info.owner / info.name / commit
    if out.is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{commit}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        table = repo.table(commit)
        export(repo.store, table, tmp / "data")
        (tmp / "README.md").write_text(card(info, commit, repo))
        listing = [
            {"type": "file", "path": p.relative_to(tmp).as_posix(), "size": p.stat().st_size, "oid": _sha256(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        ]
        (tmp / LISTING).write_text(json.dumps(listing))
        fsync_dir(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            if not out.is_dir():  # another request made it first: theirs is the same bytes
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def card(info: RepoInfo, commit: str, repo: Repo) -> str:
    """A dataset card: YAML front matter ``datasets`` reads (configs, splits, features), then prose."""
    table = repo.table(commit)
    labels = Counter(str(v) for v in table.cols["label"] if v is not None)
    splits = Counter(str(v) for v in table.cols["split"])
    present = [s for s in SPLITS if splits.get(s)]
    data_files = "".join(f"  - split: {s}\n    path: data/{s}.parquet\n" for s in present)
    rows = "".join(f"| {lab} | {n} |\n" for lab, n in sorted(labels.items()))
    return (
        "---\n"
        f"pretty_name: {json.dumps(info.full_name)}\n"
        "configs:\n- config_name: default\n  data_files:\n" + data_files + "---\n\n"
        f"# {info.full_name}\n\n"
        f"Commit `{commit}` of the kiln repository {info.full_name}: {len(table):,} examples "
        f"({', '.join(f'{splits[s]:,} {s}' for s in present)}), {sum(labels.values()):,} labeled.\n\n"
        "Columns: `image` (bytes and path), `label`, `split`, `source` (who or what made the label), `time`, "
        "`id`, `name`, `blob` (sha256 of the image), `format`, `width`, `height`, `meta_*`.\n\n"
        "| label | examples |\n|---|---|\n" + rows
    )


def _entries(folder: Path) -> list[dict[str, Any]]:
    """The files of a commit's folder as the tree API lists them (made with the folder)."""
    listing: list[dict[str, Any]] = json.loads((folder / LISTING).read_text())
    return listing


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_routes(app: FastAPI, hub: Hub) -> None:
    from .app import json_response, who

    def opened(request: Request, owner: str, name: str, rev: str | None) -> tuple[RepoInfo, Repo, str]:
        info = hub.access(who(hub, request), owner, name, "read")
        repo = hub.open(info)
        commit = _resolve(repo, rev or repo.branch_name() or "main")
        return info, repo, commit

    def info_json(request: Request, owner: str, name: str, rev: str | None) -> Response:
        info, repo, commit = opened(request, owner, name, rev)
        folder = files_of(hub, info, repo, commit)
        c = repo.read_commit(commit)
        last = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(c.time))
        body = {
            "id": info.full_name,
            "_id": info.full_name,
            "author": info.owner,
            "sha": commit,
            "private": info.private,
            "gated": False,
            "disabled": False,
            "lastModified": last,
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(info.created)),
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "siblings": [{"rfilename": e["path"], "size": e["size"]} for e in _entries(folder)],
            "cardData": {},
        }
        return json_response(body)

    @app.get("/api/datasets/{owner}/{name}")
    def dataset(owner: str, name: str, request: Request) -> Response:
        return info_json(request, owner, name, None)

    @app.get("/api/datasets/{owner}/{name}/revision/{rev:path}")
    def dataset_at(owner: str, name: str, rev: str, request: Request) -> Response:
        return info_json(request, owner, name, rev)

    @app.get("/api/datasets/{owner}/{name}/tree/{rev}")
    def tree(owner: str, name: str, rev: str, request: Request) -> Response:
        info, repo, commit = opened(request, owner, name, rev)
        return json_response(_entries(files_of(hub, info, repo, commit)))

    @app.get("/api/datasets/{owner}/{name}/tree/{rev}/{path:path}")
    def subtree(owner: str, name: str, rev: str, path: str, request: Request) -> Response:
        info, repo, commit = opened(request, owner, name, rev)
        return json_response(
            [e for e in _entries(files_of(hub, info, repo, commit)) if e["path"].startswith(path.rstrip("/") + "/")]
        )

    @app.api_route("/datasets/{owner}/{name}/resolve/{rev}/{path:path}", methods=["GET", "HEAD"])
    def resolve(owner: str, name: str, rev: str, path: str, request: Request) -> Response:
        info, repo, commit = opened(request, owner, name, rev)
        folder = files_of(hub, info, repo, commit)
        wanted = {e["path"]: e for e in _entries(folder)}.get(path)
        if wanted is None:  # only listed files: a path never reaches the filesystem unchecked
            raise RevisionNotFound(f"{path[:200]!r} is not a file of {info.full_name} at {commit[:12]}")
        headers = {"X-Repo-Commit": commit, "ETag": f'"{wanted["oid"]}"', "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(wanted["size"])})
        return FileResponse(folder / path, headers=headers, media_type="application/octet-stream")
