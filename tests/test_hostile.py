"""Hostile inputs (tests/hostile/): one clear error naming the input and the fix, nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import datakiln
from datakiln.errors import BadImage, BadLabel, BadManifest, ExampleNotFound, InputError
from tests.conftest import ENV, HOSTILE, kiln, snapshot_files

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
    # The library names the file and why; each front end says how to skip (CLI: --skip-bad).
    assert f"cat/{name}" in msg and why in msg and "skip them" in msg and "--skip-bad" not in msg
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
    assert "--skip-bad" in res.stderr
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


# ---- defects found by trials: each is a test that failed before its fix ------------------------


def test_corrupt_jpeg_claiming_a_huge_size_is_refused(repo: datakiln.Repo, tmp_path: Path) -> None:
    """1.2 KB claiming 6000x6000: libjpeg greys out what is missing and only warns."""
    src = tmp_path / "src" / "cat"
    src.mkdir(parents=True)
    shutil.copy(HOSTILE / "corrupt_6000.jpg", src / "x.jpg")
    with pytest.raises(BadImage, match="cannot hold the 843,750 blocks"):
        repo.import_folder(tmp_path / "src")


def test_folder_import_reports_links_out_broken_links_and_pipes(repo: datakiln.Repo, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    shutil.copy(HOSTILE / "good.png", outside)
    src = tmp_path / "src" / "cat"
    src.mkdir(parents=True)
    shutil.copy(HOSTILE / "good.png", src / "good.png")
    os.symlink(outside, src / "out.png")
    os.symlink(tmp_path / "nothing.png", src / "broken.png")
    os.symlink(src / "loop.png", src / "loop.png")
    os.mkfifo(src / "pipe.png")
    os.symlink(src / "good.png", src / "inside.png")  # a link that stays inside is fine
    before = snapshot_files(repo.root)
    with pytest.raises(BadImage, match="4 bad file") as e:
        repo.import_folder(tmp_path / "src")
    msg = str(e.value)
    assert "cat/out.png: the path leads outside" in msg
    assert "cat/broken.png: a link that leads nowhere" in msg and "cat/loop.png" in msg
    assert "cat/pipe.png: not a regular file" in msg
    assert snapshot_files(repo.root) == before
    rep = repo.import_folder(tmp_path / "src", skip_bad=True)
    assert rep.added == 2 and len(rep.bad) == 4


@pytest.mark.slow
def test_two_concurrent_imports_of_one_folder_count_once(repo: datakiln.Repo, tmp_path: Path) -> None:
    from tests.conftest import png, write_folder

    src = write_folder(tmp_path / "src", {f"c{i % 2}/{i}.png": png((i, 7, 9)) for i in range(300)})
    procs = [
        subprocess.Popen([sys.executable, "-m", "datakiln", "-C", str(repo.root), "import", str(src)], env=ENV)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    r = datakiln.Repo(repo.root)
    assert r.status()["staged"]["added"] == 300 and len(r.table()) == 300
    r.commit("both")
    assert r.status()["stats"]["examples"] == 300 and r.fsck().ok


@pytest.mark.parametrize("where", ["manifest", "fixes"])
def test_quoted_line_breaks_in_csv_are_refused(repo: datakiln.Repo, tmp_path: Path, where: str) -> None:
    shutil.copy(HOSTILE / "good.png", tmp_path / "a.png")
    if where == "manifest":
        (tmp_path / "m.csv").write_text('path,label,note\na.png,"ca\nt",x\n')
        with pytest.raises(BadManifest, match="spans lines"):
            repo.import_manifest(tmp_path / "m.csv")
        (tmp_path / "m.csv").write_text('path,label,note\na.png,cat,"line1\nline2"\n')
        with pytest.raises(BadManifest, match="line 2: a quoted value spans lines"):
            repo.import_manifest(tmp_path / "m.csv")
        return
    repo.import_manifest(_manifest(tmp_path, "a.png,cat\n"))
    eid = repo.table().ids[0]
    (tmp_path / "f.csv").write_text(f'id,label\n{eid},"ca\nt"\n')
    with pytest.raises(BadManifest, match="spans lines"):
        repo.label_file(tmp_path / "f.csv")


def _manifest(tmp_path: Path, rows: str) -> Path:
    p = tmp_path / "labels.csv"
    p.write_text("path,label\n" + rows)
    return p


def _cli_error(args: list[str], cwd: Path) -> str:
    """Run kiln; it must fail with one ``kiln:`` line and no traceback. Returns stderr."""
    res = kiln(*args, cwd=cwd, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr and res.stderr.startswith("kiln:"), res.stderr
    assert "unexpected" not in res.stderr, f"only the CLI's last resort caught this: {res.stderr}"
    return res.stderr


@pytest.mark.slow
def test_malformed_inputs_give_a_kiln_error_not_a_traceback(tmp_path: Path) -> None:
    kiln("init", "r", cwd=tmp_path)
    root = tmp_path / "r"
    shutil.copy(HOSTILE / "good.png", tmp_path / "a.png")
    # a CSV field over csv's limit, in a manifest and in a label file
    (tmp_path / "long.csv").write_text("path,label\na.png," + "x" * 140_000 + "\n")
    assert "not valid CSV" in _cli_error(["import", "--manifest", str(tmp_path / "long.csv")], root)
    kiln("import", "--manifest", str(_manifest(tmp_path, "a.png,cat\n")), cwd=root)
    (tmp_path / "longfix.csv").write_text("id,label\nabcd," + "x" * 140_000 + "\n")
    assert "not valid CSV" in _cli_error(["label", "--file", str(tmp_path / "longfix.csv")], root)
    # deeply nested and huge-integer JSONL
    (tmp_path / "deep.jsonl").write_text('{"path": "a.png", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert "deep.jsonl line 1" in _cli_error(["import", "--manifest", str(tmp_path / "deep.jsonl")], root)
    (tmp_path / "big.jsonl").write_text('{"path": "a.png", "label": ' + "9" * 5000 + "}\n")
    assert "too large" in _cli_error(["import", "--manifest", str(tmp_path / "big.jsonl")], root)
    # a symlink loop as the folder to import
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    _cli_error(["import", str(tmp_path / "loop")], root)
    # -C a folder that does not exist
    assert "no such directory" in _cli_error(["-C", str(tmp_path / "nope"), "status"], tmp_path)


@pytest.mark.slow
def test_damaged_working_files_name_themselves_and_reset_recovers(tmp_path: Path) -> None:
    kiln("init", "r", cwd=tmp_path)
    root = tmp_path / "r"
    kiln("import", "--sample", "digits", cwd=root)
    for bad in ('{"version": 1, "changes": 7}', "[]", "{not json", '{"version": 1, "changes": {"add": ["../x"]}}'):
        (root / ".kiln" / "stage.json").write_text(bad)
        assert "stage.json is damaged" in _cli_error(["status"], root)
        kiln("reset", cwd=root)  # the fix the error recommends works
        assert "Nothing staged" in kiln("status", cwd=root).stdout
    (root / ".kiln" / "config.json").write_text("garbage")
    assert "config.json is damaged" in _cli_error(["status"], root)


def _digits_cli(tmp_path: Path) -> Path:
    kiln("init", "r", cwd=tmp_path)
    root = tmp_path / "r"
    kiln("import", "--sample", "digits", cwd=root)
    kiln("commit", "-m", "digits", cwd=root)
    return root


@pytest.mark.slow
def test_damaged_store_files_give_errors_that_name_them(tmp_path: Path) -> None:
    root = _digits_cli(tmp_path)
    idx = next((root / ".kiln" / "objects" / "pack").glob("*.idx"))
    pack = idx.with_suffix(".pack")
    saved = pack.read_bytes()
    eid = datakiln.Repo(root).table().ids[0]
    pack.write_bytes(b"")  # an empty pack (it holds the images)
    assert "cannot be read" in _cli_error(["cat", eid], root)
    pack.unlink()  # a missing pack
    assert pack.name in _cli_error(["cat", eid], root)
    assert not kiln_json_ok(root)
    pack.write_bytes(saved)
    head = datakiln.Repo(root).resolve("HEAD")
    loose = root / ".kiln" / "objects" / head[:2] / head[2:]
    data = loose.read_bytes()
    loose.unlink()
    loose.mkdir()  # a loose object that is a folder
    assert "cannot be read" in _cli_error(["log"], root)
    loose.rmdir()
    loose.write_bytes(data)
    assert kiln_json_ok(root)


def kiln_json_ok(root: Path) -> bool:
    import json

    return bool(json.loads(kiln("fsck", "--json", cwd=root, check=False).stdout)["ok"])


def _forge(r: datakiln.Repo, obj: dict[str, object]) -> str:
    return r.store.put_json(obj)


@pytest.mark.slow
def test_head_outside_the_repository_is_refused(tmp_path: Path) -> None:
    root = _digits_cli(tmp_path)
    kiln("label", datakiln.Repo(root).table().ids[0], "3", cwd=root)
    for target in ("../../x", str(tmp_path / "abs"), "refs/../../y"):
        (root / ".kiln" / "HEAD").write_text(f"ref: {target}\n")
        assert "HEAD names" in _cli_error(["commit", "-m", "escape"], root)
        assert not kiln_json_ok(root)
        assert "HEAD names" in _cli_error(["gc", "--prune", "now"], root)
    assert not (tmp_path / "x").exists() and not (tmp_path / "abs").exists() and not (tmp_path.parent / "y").exists()
    (root / ".kiln" / "HEAD").write_text("ref: refs/heads/main\n")
    assert kiln_json_ok(root)


@pytest.mark.slow
def test_object_ids_read_from_objects_never_become_paths(tmp_path: Path) -> None:
    root = _digits_cli(tmp_path)
    r = datakiln.Repo(root)
    head = r.read_commit(r.resolve("HEAD"))
    for parent in ("../../../etc/passwd", "xx/dev/zero", "../" * 20 + "etc/hostname"):
        forged = _forge(
            r,
            {
                "type": "commit",
                "parents": [parent],
                "state": head.state,
                "author": "x",
                "time": 0,
                "message": "m",
                "generation": 2,
                "stats": head.stats,
            },
        )
        (root / ".kiln" / "refs" / "heads" / "evil").write_text(forged + "\n")
        for args in (["log", "evil"], ["log", "evil~1"], ["fsck"]):
            res = kiln(*args, cwd=root, check=False)  # the kiln helper's timeout catches a read of /dev/zero
            assert "root:" not in res.stdout and "Traceback" not in res.stderr
        assert "not an object id" in _cli_error(["log", "evil"], root)
        assert not kiln_json_ok(root)
    (root / ".kiln" / "refs" / "heads" / "evil").unlink()


@pytest.mark.slow
def test_fsck_decodes_what_it_walks(tmp_path: Path) -> None:
    """States that hash correctly but cannot be listed: fsck must say so, not 'ok'."""
    root = _digits_cli(tmp_path)
    r = datakiln.Repo(root)
    head = r.read_commit(r.resolve("HEAD"))
    base = {
        "type": "commit",
        "parents": [],
        "author": "x",
        "time": 0,
        "message": "m",
        "generation": 1,
        "stats": head.stats,
    }
    state = r.store.get_json(head.state)
    bad_code = dict(
        state,
        set={
            **state["set"],
            "positions": [0],
            "label": {"values": ["a"], "codes": [5]},
            "source": {"values": [None], "codes": [0]},
            "time": {"values": [0], "codes": [0]},
        },
    )
    cases = {
        "a state that is a commit": _forge(r, {**base, "state": head.id}),
        "an out-of-range dictionary code": _forge(r, {**base, "state": r.store.put_json(bad_code)}),
    }
    for what, cid in cases.items():
        (root / ".kiln" / "refs" / "heads" / "bad").write_text(cid + "\n")
        res = kiln("fsck", cwd=root, check=False)
        assert res.returncode == 1 and "error" in res.stdout, what
        _cli_error(["ls", "--rev", "bad"], root)
    (root / ".kiln" / "refs" / "heads" / "bad").unlink()
    (root / ".kiln" / "HEAD").write_text("ref: HEAD\n")  # HEAD outside refs/
    assert not kiln_json_ok(root)


@pytest.mark.slow
def test_control_characters_in_author_names_are_refused_and_never_printed(tmp_path: Path) -> None:
    root = _digits_cli(tmp_path)
    eid = datakiln.Repo(root).table().ids[0]
    kiln("label", eid, "3", cwd=root)
    assert "control characters" in _cli_error(["commit", "-m", "x", "--author", "a\x1b[2Jb"], root)
    env = {**ENV, "KILN_USER": "evil\x1b[2J"}
    res = kiln("commit", "-m", "x", cwd=root, env=env, check=False)
    assert res.returncode == 1 and "control characters" in res.stderr
    # A commit written by another tool with an escape in it is printed escaped.
    r = datakiln.Repo(root)
    head = r.read_commit(r.resolve("HEAD"))
    forged = _forge(
        r,
        {
            "type": "commit",
            "parents": [head.id],
            "state": head.state,
            "author": "evil\x1b[2J",
            "time": 0,
            "message": "hi\x1b[31m",
            "generation": head.generation + 1,
            "stats": head.stats,
        },
    )
    r.refs.update("refs/heads/main", forged, head.id)
    out = kiln("log", cwd=root).stdout + kiln("show", cwd=root).stdout
    assert "\x1b" not in out and "\\x1b" in out


def test_hostile_job_records_touch_nothing_outside_their_folder(digits: datakiln.Repo, tmp_path: Path) -> None:
    """A job.json written by someone else: its id never names a path for gc, a forged pid is
    never 'running' and never signalled."""
    import json

    from datakiln.compile import jobs

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    for name, info in {
        "20260101-000000-aaaaaa": {"id": str(victim), "pid": None, "started": 0, "end": {"code": 1}},
        "20260101-000000-bbbbbb": {"id": "../..", "pid": -1, "pid_start": None, "started": 0},
    }.items():
        d = jobs.jobs_dir(digits) / name
        d.mkdir(parents=True)
        (d / "job.json").write_text(json.dumps(info))
        os.utime(d / "job.json", (0, 0))
    states = {j["id"]: j["state"] for j in jobs.list_jobs(digits)}
    assert states == {"20260101-000000-aaaaaa": "failed", "20260101-000000-bbbbbb": "failed"}
    with pytest.raises(datakiln.StateError, match="not running"):
        jobs.cancel(digits, "20260101-000000-bbbbbb")
    assert jobs.prune_jobs(digits, cutoff=1e12) == 2
    assert (victim / "keep.txt").read_text() == "mine" and (digits.root / ".kiln" / "config.json").exists()


def test_export_refuses_paths_forged_into_a_segment(digits: datakiln.Repo, tmp_path: Path) -> None:
    """Split, label, id and format come from objects on disk: a forged one must not write outside."""
    from datakiln.repo.table import Segment

    t = digits.table()
    seg = Segment(
        ["ab" * 16],
        [t.blobs[0]],
        {
            "name": ["x.png"],
            "split": ["train"],
            "label": ["../../escaped"],
            "source": ["import"],
            "time": [0],
            "format": ["png"],
            "width": [8],
            "height": [8],
            "mode": ["L"],
        },
    )
    from datakiln.repo.stage import Stage

    stage = Stage()
    stage.changes.add.append(digits.store.put_json(seg.to_json()))
    stage.save(digits.layout.stage, digits.tmp_dir)  # as if imported: the forged row is staged
    with pytest.raises(BadLabel, match="escaped"):
        digits.export(tmp_path / "out", format="folder")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "out").exists()
