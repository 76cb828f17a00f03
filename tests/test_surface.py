"""The public surface: what ``import datakiln`` loads, exports and documents."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import datakiln
from datakiln import errors
from tests.conftest import ENV

ROOT = Path(__file__).resolve().parent.parent


def test_import_is_light() -> None:
    code = "import sys, datakiln; print(','.join(sorted(m for m in ('torch', 'fastapi', 'numpy', 'PIL', 'pyarrow', 'datakiln.cli', 'argparse', 'click') if m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True
    ).stdout.strip()
    assert out == ""


def test_all_is_complete() -> None:
    for name in datakiln.__all__:
        assert hasattr(datakiln, name), name
    for name, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, errors.KilnError):
            assert name in datakiln.__all__, f"{name} is not exported"
            assert obj.__doc__, f"{name} has no docstring"
            assert name in errors.__doc__, f"{name} is missing from the tree drawn in errors.py"


def test_every_command_is_documented() -> None:
    from datakiln.cli import COMMANDS

    doc = (ROOT / "docs" / "cli.md").read_text()
    for name in COMMANDS:
        assert re.search(rf"^## `kiln {name}`", doc, re.M), f"kiln {name} is not in docs/cli.md"


def test_glossary_terms() -> None:
    doc = (ROOT / "docs" / "glossary.md").read_text()
    for term in (
        "example",
        "example id",
        "label",
        "label source",
        "split",
        "slice",
        "commit",
        "ref",
        "stage",
        "segment",
        "snapshot",
        "delta",
        "blob",
        "pack",
        "build",
        "package",
        "pred_probs",
        "N",
        "K",
    ):
        assert re.search(rf"\*\*{re.escape(term)}\*\*", doc, re.I), term


def test_every_spec_key_is_documented() -> None:
    from datakiln.compile.spec import all_keys

    doc = (ROOT / "docs" / "build.md").read_text()
    for key in all_keys():
        assert f"| `{key}` |" in doc, f"spec key {key} is not in docs/build.md"


def test_cli_start_does_not_load_torch() -> None:
    mods = ("torch", "numpy", "fastapi", "uvicorn")
    code = f"import sys; from datakiln import cli; print(*[m in sys.modules for m in {mods!r}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    assert out.split() == ["False"] * len(mods)


def test_the_server_imports_no_torch() -> None:
    """``kiln ui`` starts fast: torch is loaded only by the build processes it starts."""
    code = "import sys; import datakiln.server.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    assert out.split() == ["False"]


def test_every_working_copy_file_is_documented() -> None:
    from datakiln.repo.layout import PATHS

    doc = (ROOT / "docs" / "format.md").read_text()
    for path, owner, _ in PATHS:
        assert f"| `{path}` | {owner} |" in doc, f".kiln/{path} is not in docs/format.md's table"
