"""The README's commands are the ones CI and newcomers run: this test runs the first one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow  # a browser, a fresh install: not the inner loop

ROOT = Path(__file__).resolve().parent.parent


def readme_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)\n```", text, re.S)
    assert m, f"README.md has no ```sh block after <!-- {marker} -->"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command() -> None:
    out = subprocess.run(
        ["awk", "/<!-- test-command -->/{f=1; next} f && /^```sh/{g=1; next} g && /^```/{exit} g{print}", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == readme_command("test-command")
    assert "awk" in (ROOT / ".ci" / "run").read_text()


def test_readme_main_command_on_a_fresh_copy(tmp_path: Path) -> None:
    """Copy the source tree, run the README's first command there, check the demo's result."""
    src = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    cmd = readme_command("main-command")
    assert cmd.endswith("kiln -C kiln-demo ui"), "the main command ends by starting the UI"
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=src, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, url = serve_line(proc)
    try:
        # The newcomer lands in the review queue of the model the demo just built.
        assert url.endswith("/review"), out[-3000:]
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and 'name="kiln-token"' in page.text
        static = sorted(p.name for p in (ROOT / "datakiln" / "ui" / "static").iterdir())
        assert "app.js" in static and "core.js" in static
        for name in static:  # every module shipped in the wheel, not read from the source tree
            assert httpx.get(url.rsplit("/", 1)[0] + "/static/" + name, timeout=30).status_code == 200, name
        base = url.rsplit("/", 1)[0]
        review = httpx.get(base + "/api/review", timeout=30).json()
        assert review["build"] and all(x["suggested"] for x in review["items"])
        # With no suspects (the sample may have none), the page points to the least likely labels.
        least = httpx.get(base + "/api/gallery?sort=issue&limit=5", timeout=30).json()["items"]
        assert len(least) == 5 and all(x["predicted"] is not None for x in least)
    finally:
        proc.terminate()
        rest, err = proc.communicate(timeout=60)
    out += rest
    assert "$ kiln commit -m 'relabel two ambiguous digits'" in out
    assert "0 added, 0 removed, 2 relabeled" in out
    assert "$ kiln build" in out and "confusion matrix" in out
    assert "suspected label error(s)" in out.split("$ kiln issues")[-1]
    test_acc = float(re.search(r"test (\d\.\d+) \(n=", out).group(1))  # type: ignore[union-attr]
    assert test_acc >= 0.95, out[-3000:]
    log = subprocess.run(
        [str(src / ".venv" / "bin" / "kiln"), "log", "relabel", "--json"],
        cwd=src / "kiln-demo",
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"relabel two ambiguous digits"' in log.stdout


def serve_line(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Read the demo's output up to the UI's "serving ... at URL" line; (output so far, URL)."""
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError("the main command ended before serving:\n" + "".join(lines)[-3000:] + err[-3000:])
        lines.append(line)
        if line.startswith("kiln ui: serving"):
            return "".join(lines), line.split(" at ", 1)[1].split()[0]
    proc.kill()
    raise AssertionError("the main command did not start the UI in 15 minutes")


def python_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)\n```", text, re.S)
    assert m, f"README.md has no ```python block after <!-- {marker} -->"
    return m.group(1)


@pytest.mark.slow
def test_readme_python_api_runs_as_written(tmp_path: Path) -> None:
    """The README's Python block, verbatim, beside the folder it names."""
    import io
    import sys

    from PIL import Image

    for label, base in (("cat", (200, 60, 40)), ("dog", (40, 80, 200))):
        folder = tmp_path / "photos" / "animals" / label
        folder.mkdir(parents=True)
        for i in range(24):
            buf = io.BytesIO()
            Image.new("RGB", (16, 16), tuple((c + 3 * i) % 256 for c in base)).save(buf, format="PNG")
            (folder / f"{i}.png").write_bytes(buf.getvalue())
    (tmp_path / "snippet.py").write_text(python_block("python-api"))
    from tests.conftest import ENV

    proc = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "'relabeled': [{" in lines[0] and "'old': 'cat', 'new': 'dog'" in lines[0]
    assert lines[1] in ("['cat']", "['dog']")


def test_readme_share_block_runs_as_written(digits: Any, tmp_path: Path) -> None:
    """The README's sharing block, verbatim, in a home of its own, beside a `kiln-demo` with a
    `relabel` branch (what `kiln demo` leaves). The hub it starts in the background is stopped
    with its process group."""
    import os
    import sys

    import datakiln
    from tests.conftest import ENV

    home = tmp_path / "home"  # not tmp_path: the digits fixture lives there, and the block clones 'digits'
    demo = home / "kiln-demo"
    shutil.copytree(digits.root, demo)
    r = datakiln.Repo(demo)
    r.checkout("relabel", create=True)
    r.label(r.table().ids[5], "8")
    r.commit("relabel a digit")
    r.checkout("main")
    datakiln.build(r, epochs=2, folds=0, progress=False)  # what `kiln demo` built, quicker
    env = {**ENV, "HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("KILN_CONFIG_HOME", None)
    env.pop("KILN_TOKEN", None)
    # Files, not pipes: the hub the block leaves in the background would hold a pipe open.
    with open(tmp_path / "out.txt", "w") as fo, open(tmp_path / "err.txt", "w") as fe:
        proc = subprocess.Popen(
            ["bash", "-ec", readme_command("share-commands") + "\n" + readme_command("registry-commands")],
            cwd=home, env=env, stdout=fo, stderr=fe,
            start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=300)
        finally:
            _stop_group(proc.pid)  # the hub the block left running in the background
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert proc.returncode == 0, out + err
    assert "#1 opened" in out and "fast-forward: " in out  # main had not moved: the merge fast-forwards
    hosted = datakiln.Repo(home / "kiln-hub" / "repos" / "alice" / "digits")
    assert hosted.table("main").label_of(r.table("relabel").ids[5])[0] == "8"
    assert (home / ".config" / "kiln" / "credentials.json").stat().st_mode & 0o077 == 0
    # The registry block: published, installed and pinned, described, served; the seven is a seven.
    assert "published alice/digits-cnn 1.0.0" in out and "pinned in" in out and "lineage:" in out
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["model"] == "alice/digits-cnn" and answer["predictions"][0]["label"] == "7"
    assert (home / "kiln.lock").is_file()


def _stop_group(pgid: int) -> None:
    """SIGTERM a process group, then SIGKILL what is left after a few seconds."""
    import os
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
