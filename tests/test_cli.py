"""The real ``kiln`` command in a subprocess: the issue's walkthrough and the JSON schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ENV, kiln, kiln_json, png, write_folder


@pytest.mark.slow
def test_walkthrough(tmp_path: Path) -> None:
    kiln("init", "animals", cwd=tmp_path)
    repo = tmp_path / "animals"
    photos = write_folder(
        tmp_path / "photos", {"cat/1.png": png((1, 1, 1)), "dog/2.png": png((2, 2, 2)), "dog/3.png": png((3, 3, 3))}
    )
    assert "imported 3 example(s)" in kiln("import", str(photos), cwd=repo).stdout
    kiln("import", "--sample", "digits", cwd=repo)
    status = kiln_json("status", cwd=repo)
    assert status["staged"]["added"] == 1800 and status["head"] is None
    kiln("commit", "-m", "first import", cwd=repo)

    rows = kiln_json("ls", "--label", "dog", cwd=repo)
    assert len(rows) == 2 and set(rows[0]) >= {"id", "label", "split", "source"}
    dog = rows[0]["id"]
    kiln("label", dog[:6], "cat", cwd=repo)
    (tmp_path / "fixes.csv").write_text(f"id,label\n{rows[1]['id']},cat\n")
    kiln("label", "--file", str(tmp_path / "fixes.csv"), cwd=repo)
    kiln("commit", "-m", "fix cats labelled dog", cwd=repo)

    log = kiln_json("log", cwd=repo)
    assert [c["message"] for c in log] == ["fix cats labelled dog", "first import"]
    assert log[0]["parents"] == [log[1]["id"]] and log[1]["parents"] == []
    diff = kiln_json("diff", "HEAD~1", "HEAD", cwd=repo)
    assert diff["added"] == [] and diff["removed"] == []
    assert sorted((r["id"], r["old"], r["new"]) for r in diff["relabeled"]) == sorted(
        [(dog, "dog", "cat"), (rows[1]["id"], "dog", "cat")]
    )
    assert all(r["source"] == "human:tester" for r in diff["relabeled"])
    shown = kiln_json("show", "HEAD", cwd=repo)
    assert shown["commit"]["id"] == log[0]["id"] and len(shown["diff"]["relabeled"]) == 2
    assert "fix cats labelled dog" in kiln("show", "HEAD", cwd=repo).stdout

    kiln("branch", "relabel-birds", cwd=repo)
    kiln("checkout", "relabel-birds", cwd=repo)
    typo = kiln("label", dog, "bird", cwd=repo, check=False)  # a label no example has: a typo, or a new class?
    assert typo.returncode == 1 and "--new-class" in typo.stderr and "kiln: " in typo.stderr
    kiln("label", dog, "bird", "--new-class", cwd=repo)
    kiln("commit", "-m", "birds", cwd=repo)
    kiln("checkout", "main", cwd=repo)
    assert "fast-forward" in kiln("merge", "relabel-birds", cwd=repo).stdout
    assert kiln_json("ls", "--label", "bird", cwd=repo)[0]["id"] == dog

    out = tmp_path / "out"
    kiln("export", "--format", "parquet", str(out), cwd=repo)
    assert sorted(p.name for p in out.iterdir()) == ["test.parquet", "train.parquet", "valid.parquet"]
    kiln("export", "--format", "folder", str(tmp_path / "folder"), cwd=repo)
    assert (tmp_path / "folder" / "manifest.csv").exists()
    assert "ok" in kiln("fsck", cwd=repo).stdout
    kiln("gc", cwd=repo)
    assert kiln_json("fsck", cwd=repo)["ok"] is True


def test_diff_of_stage_and_status_text(tmp_path: Path) -> None:
    kiln("init", "r", cwd=tmp_path)
    repo = tmp_path / "r"
    kiln("import", "--sample", "digits", cwd=repo)
    kiln("commit", "-m", "sample", cwd=repo)
    eid = kiln_json("ls", cwd=repo)[5]["id"]
    kiln("rm", eid, cwd=repo)
    d = kiln_json("diff", cwd=repo)
    assert d == {"added": [], "removed": [eid], "relabeled": []}
    assert "1796 examples" in kiln("status", cwd=repo).stdout


@pytest.mark.slow
def test_conflicting_merge_via_cli(tmp_path: Path) -> None:
    kiln("init", "r", cwd=tmp_path)
    repo = tmp_path / "r"
    kiln("import", "--sample", "digits", cwd=repo)
    kiln("commit", "-m", "sample", cwd=repo)
    eid = kiln_json("ls", cwd=repo)[0]["id"]
    kiln("checkout", "-b", "other", cwd=repo)
    kiln("label", eid, "theirs", "--new-class", cwd=repo)
    kiln("commit", "-m", "theirs", cwd=repo)
    kiln("checkout", "main", cwd=repo)
    kiln("label", eid, "ours", "--new-class", cwd=repo)
    kiln("commit", "-m", "ours", cwd=repo)
    res = kiln("merge", "other", cwd=repo, check=False)
    assert res.returncode == 1 and eid[:12] in res.stdout
    st = kiln_json("status", cwd=repo)
    assert [c["id"] for c in st["merge"]["conflicts"]] == [eid]
    failed = kiln("commit", "-m", "merge", cwd=repo, check=False)
    assert failed.returncode == 1 and "kiln merge --ours" in failed.stderr
    kiln("merge", "--theirs", cwd=repo)
    kiln("commit", "-m", "merge other", cwd=repo)
    assert kiln_json("ls", "--label", "theirs", cwd=repo)[0]["id"] == eid


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    res = kiln("status", cwd=tmp_path, check=False)
    assert res.returncode == 1 and res.stderr.startswith("kiln: no kiln repository") and "Traceback" not in res.stderr
    kiln("init", "r", cwd=tmp_path)
    res = kiln("label", "abcd", "x", cwd=tmp_path / "r", check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    res = kiln("log", "nope", cwd=tmp_path / "r", check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    res = kiln("commit", "-m", "x", cwd=tmp_path / "r", check=False)
    assert res.returncode == 1 and res.stderr.startswith("kiln: nothing to commit")
    res = kiln("stauts", cwd=tmp_path / "r", check=False)
    assert res.returncode == 2 and "did you mean 'kiln status'?" in res.stderr


def test_commands_load_only_their_own_module() -> None:
    """`kiln --help` lists every command without importing one; running a command imports its
    module alone (the parser used to import every command's code: 0.4 s before anything ran)."""
    from datakiln.cli import COMMANDS
    from datakiln.cli.base import REGISTRY

    code = (
        "import sys; from datakiln.cli import parser; parser(None).format_help(); "
        "print(sorted(m for m in sys.modules if m.startswith('datakiln.cli.') or m in ('numpy', 'datakiln.repo')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    assert out.strip() == "[]"
    for module in {m for m, _ in COMMANDS.values()}:
        __import__(f"datakiln.cli.{module}")
    assert set(REGISTRY) == set(COMMANDS)
    for name, (module, _) in COMMANDS.items():
        assert REGISTRY[name][1].__module__ == f"datakiln.cli.{module}", name


@pytest.mark.slow
def test_every_command_has_help_with_an_example() -> None:
    from datakiln.cli import COMMANDS

    for name in COMMANDS:
        res = subprocess.run(
            [sys.executable, "-m", "datakiln", name, "--help"], capture_output=True, text=True, env=ENV
        )
        assert res.returncode == 0 and "example:" in res.stdout and f"kiln {name}" in res.stdout, name


def test_cat_writes_image_bytes(tmp_path: Path) -> None:
    kiln("init", "r", cwd=tmp_path)
    repo = tmp_path / "r"
    data = png((5, 6, 7))
    kiln("import", str(write_folder(tmp_path / "p", {"a/x.png": data})), cwd=repo)
    eid = kiln_json("ls", cwd=repo)[0]["id"]
    res = subprocess.run([sys.executable, "-m", "datakiln", "cat", eid[:6]], cwd=repo, capture_output=True, env=ENV)
    assert res.stdout == data
