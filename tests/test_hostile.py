"""Hostile inputs (tests/hostile/): one clear error naming the input and the fix, nothing written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import datakiln
from datakiln.errors import BadImage, BadLabel, BadManifest, ExampleNotFound, InputError
from tests.conftest import HOSTILE, kiln, snapshot_files

BAD_IMAGES = {
    "zero.png": "empty",
    "truncated.png": "truncated",
    "truncated.jpg": "truncated",
    "corrupt.png": "corrupt",
    "notimage.png": "not a PNG, JPEG or WebP",
    "readme.txt": "not a PNG, JPEG or WebP",
    "script.svg": "not a PNG, JPEG or WebP",
    "image.gif": "not a PNG, JPEG or WebP",
    "bomb.png": "decompression bomb",
    "bomb_40mp.png": "pixel limit",
}


@pytest.mark.parametrize("name,why", sorted(BAD_IMAGES.items()))
def test_bad_image_in_folder_imports_nothing(repo: datakiln.Repo, tmp_path: Path, name: str, why: str) -> None:
    src = tmp_path / "src"
    (src / "cat").mkdir(parents=True)
    shutil.copy(HOSTILE / "good.png", src / "cat" / "good.png")
    shutil.copy(HOSTILE / name, src / "cat" / name)
    before = snapshot_files(repo.root)
    with pytest.raises(BadImage) as e:
        repo.import_folder(src)
    msg = str(e.value)
    assert f"cat/{name}" in msg and why in msg and "--skip-bad" in msg
    assert snapshot_files(repo.root) == before
    assert repo.status()["staged"]["added"] == 0


def test_skip_bad_imports_the_rest_and_reports(repo: datakiln.Repo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "cat").mkdir(parents=True)
    shutil.copy(HOSTILE / "good.png", src / "cat" / "good.png")
    for name in ("zero.png", "truncated.png", "bomb.png"):
        shutil.copy(HOSTILE / name, src / "cat" / name)
    rep = repo.import_folder(src, skip_bad=True)
    assert rep.added == 1 and len(rep.bad) == 3
    assert sorted(m.split(":")[0] for m in rep.bad) == ["cat/bomb.png", "cat/truncated.png", "cat/zero.png"]


def test_skip_bad_via_cli_reports_on_stderr(tmp_path: Path) -> None:
    kiln("init", "r", cwd=tmp_path)
    src = tmp_path / "src" / "cat"
    src.mkdir(parents=True)
    shutil.copy(HOSTILE / "good.png", src / "good.png")
    shutil.copy(HOSTILE / "corrupt.png", src / "corrupt.png")
    res = kiln("import", str(tmp_path / "src"), cwd=tmp_path / "r", check=False)
    assert res.returncode == 1 and "cat/corrupt.png" in res.stderr and "nothing was imported" in res.stderr
    res = kiln("import", "--skip-bad", str(tmp_path / "src"), cwd=tmp_path / "r")
    assert "imported 1 example" in res.stdout and "cat/corrupt.png" in res.stderr


MANIFESTS = {
    "manifest_dotdot.csv": (BadManifest, "contains '..'"),
    "manifest_absolute.csv": (BadManifest, "absolute"),
    "manifest_missing_path.csv": (BadManifest, "no 'path' column"),
    "manifest_extra_fields.csv": (BadManifest, "line 2: 3 fields"),
    "manifest_missing_fields.csv": (BadManifest, "line 2: 2 fields"),
    "manifest_dup_paths.csv": (BadManifest, "listed twice"),
    "manifest_bad_split.csv": (BadManifest, "holdout"),
    "manifest_control_label.csv": (BadLabel, "control characters"),
    "manifest_slash_label.csv": (BadLabel, "may not contain '/'"),
    "manifest_empty.csv": (BadManifest, "empty"),
    "manifest_nested.jsonl": (BadManifest, "key 'box' holds a dict"),
    "manifest_not_json.jsonl": (BadManifest, "not valid JSON"),
    "manifest_bad_image.csv": (BadImage, "truncated.png"),
}


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_bad_manifest(repo: datakiln.Repo, name: str) -> None:
    exc, text = MANIFESTS[name]
    before = snapshot_files(repo.root)
    with pytest.raises(exc) as e:
        repo.import_manifest(HOSTILE / name)
    assert text in str(e.value)
    assert name in str(e.value) or exc is BadImage
    assert snapshot_files(repo.root) == before


def test_manifest_symlink_escape(repo: datakiln.Repo, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    shutil.copy(HOSTILE / "good.png", outside)
    d = tmp_path / "m"
    d.mkdir()
    os.symlink(outside, d / "link.png")
    (d / "labels.csv").write_text("path,label\nlink.png,cat\n")
    with pytest.raises(BadImage, match="outside"):
        repo.import_manifest(d / "labels.csv")


def test_manifest_folder_symlink_escape(repo: datakiln.Repo, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(HOSTILE / "good.png", outside / "a.png")
    d = tmp_path / "m"
    d.mkdir()
    os.symlink(outside, d / "sub")
    (d / "labels.csv").write_text("path,label\nsub/a.png,cat\n")
    with pytest.raises(BadImage, match="sub/a.png: the path leads outside"):
        repo.import_manifest(d / "labels.csv")


def test_manifest_symlinks_inside_are_followed(repo: datakiln.Repo, tmp_path: Path) -> None:
    d = tmp_path / "m"
    (d / "real").mkdir(parents=True)
    shutil.copy(HOSTILE / "good.png", d / "real" / "a.png")
    os.symlink(d / "real", d / "alias")
    os.symlink(d / "real" / "a.png", d / "b.png")
    (d / "labels.csv").write_text("path,label\nalias/a.png,cat\nb.png,dog\n")
    assert repo.import_manifest(d / "labels.csv").added == 2


def test_manifest_naming_a_fifo_or_folder_fails_fast(repo: datakiln.Repo, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "labels.csv").write_text("path,label\npipe.png,cat\ndir.png,dog\n")
    with pytest.raises(BadImage, match="2 bad file") as e:
        repo.import_manifest(tmp_path / "labels.csv")
    assert "pipe.png: not a regular file" in str(e.value) and "dir.png: not a regular file" in str(e.value)


def test_missing_file_in_manifest(repo: datakiln.Repo, tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path,label\nnope.png,cat\n")
    with pytest.raises(BadImage, match="nope.png: cannot read"):
        repo.import_manifest(tmp_path / "labels.csv")


def _fixes(tmp_path: Path, name: str, eid: str) -> Path:
    p = tmp_path / name
    p.write_text((HOSTILE / name).read_text().replace("ID", eid))
    return p


FIXES = {
    "fixes_dup_ids.csv": (BadManifest, "already appears on line 2"),
    "fixes_extra_col.csv": (BadManifest, "header 'id,label'"),
    "fixes_unknown_id.csv": (ExampleNotFound, "0123456789abcdef"),
    "fixes_control.csv": (BadLabel, r"U\+0000"),
    "fixes_bidi.csv": (BadLabel, r"U\+202E"),
}


@pytest.mark.parametrize("name", sorted(FIXES))
def test_bad_label_file_stages_nothing(digits: datakiln.Repo, tmp_path: Path, name: str) -> None:
    exc, text = FIXES[name]
    eid = digits.table().ids[0]
    before = snapshot_files(digits.root)
    with pytest.raises(exc, match=text):
        digits.label_file(_fixes(tmp_path, name, eid))
    assert snapshot_files(digits.root) == before


@pytest.mark.parametrize("label", ["", "   ", " cat", "c\nat", "..", "a/b", "x" * 201, "\u200bcat"])
def test_bad_labels_rejected(digits: datakiln.Repo, label: str) -> None:
    with pytest.raises(BadLabel):
        digits.label(digits.table().ids[0], label)


def test_unicode_labels_welcome(digits: datakiln.Repo) -> None:
    eid = digits.table().ids[0]
    digits.label(eid, "chat noir \u00e9t\u00e9 \u732b")
    digits.commit("unicode")
    assert digits.table("HEAD").label_of(eid)[0] == "chat noir \u00e9t\u00e9 \u732b"


def test_import_source_must_exist(repo: datakiln.Repo, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        repo.import_folder(tmp_path / "nope")
    with pytest.raises(InputError, match="no such file"):
        repo.import_manifest(tmp_path / "nope.csv")


def test_bad_branch_names(digits: datakiln.Repo) -> None:
    for name in ("../x", "-x", "a..b", "HEAD", "a b", "x.lock", ".hidden", "a//b"):
        with pytest.raises(datakiln.BadName):
            digits.create_branch(name)
