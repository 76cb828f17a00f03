"""The README's commands are the ones CI and newcomers run: this test runs the first one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

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
    proc = subprocess.run(["bash", "-c", cmd], cwd=src, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "$ kiln commit -m 'relabel two ambiguous digits'" in proc.stdout
    assert "0 added, 0 removed, 2 relabeled" in proc.stdout
    assert "$ kiln build" in proc.stdout and "confusion matrix" in proc.stdout
    assert "suspected label error(s)" in proc.stdout.split("$ kiln issues")[-1]
    test_acc = float(re.search(r"test (\d\.\d+) \(n=", proc.stdout).group(1))  # type: ignore[union-attr]
    assert test_acc >= 0.95, proc.stdout[-3000:]
    log = subprocess.run(
        [str(src / ".venv" / "bin" / "kiln"), "log", "relabel", "--json"],
        cwd=src / "kiln-demo",
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"relabel two ambiguous digits"' in log.stdout
