"""Shared fixtures: real repositories on disk and the real ``kiln`` command in a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import datakiln

HOSTILE = Path(__file__).parent / "hostile"
# Tests run single-threaded: on 2 busy cores, worker pools only add noise.
ENV = {**os.environ, "KILN_JOBS": "1", "KILN_USER": "tester", "KILN_PROGRESS": "0"}


def kiln(
    *args: str, cwd: Path | str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``kiln`` command (as ``python -m datakiln``) and return the finished process."""
    proc = subprocess.run(
        [sys.executable, "-m", "datakiln", *args], cwd=cwd, capture_output=True, text=True, env=env or ENV, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kiln {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def kiln_json(*args: str, cwd: Path | str) -> Any:
    return json.loads(kiln(*args, "--json", cwd=cwd).stdout)


def png(
    color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 8), mode: str = "RGB", fmt: str = "PNG"
) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode != "L" else color[0]).save(buf, format=fmt)
    return buf.getvalue()


def write_folder(root: Path, layout: dict[str, bytes]) -> Path:
    for rel, data in layout.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


# Tests that train a model (through these fixtures), drive a browser or wait on servers are
# marked slow: `pytest -m "not slow"` is the sub-minute inner loop (README).
SLOW_FIXTURES = {"built", "built_template", "noisy", "ui_server", "page", "browser", "hub"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def repo(tmp_path: Path) -> datakiln.Repo:
    return datakiln.Repo.init(tmp_path / "repo")


@pytest.fixture(scope="session")
def digits_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed repository of the digits sample, built once and copied per test."""
    root = tmp_path_factory.mktemp("digits") / "repo"
    r = datakiln.Repo.init(root)
    r.import_sample("digits", jobs=1)
    r.commit("digits sample")
    return root


@pytest.fixture
def digits(digits_template: Path, tmp_path: Path) -> datakiln.Repo:
    import shutil

    dest = tmp_path / "digits"
    shutil.copytree(digits_template, dest)
    return datakiln.Repo(dest)


def snapshot_files(root: Path) -> dict[str, int]:
    """Every file under .kiln (except tmp/, cache/ and the lock) with its size: to prove nothing
    changed. cache/ is disposable (docs/format.md): a refused edit may still have indexed HEAD."""
    out = {}
    for p in (root / ".kiln").rglob("*"):
        parts = p.relative_to(root / ".kiln").parts
        if p.is_file() and "tmp" not in parts and "cache" not in parts and p.name != "lock":
            out[p.relative_to(root).as_posix()] = p.stat().st_size
    return out


@pytest.fixture(scope="session")
def built_template(digits_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits repository with 30 planted label errors, 40 examples unlabeled, and a quick build
    (8 epochs, 3 folds: ~5 s) that finds the errors: what the review and labelling queues need."""
    import random
    import shutil

    root = tmp_path_factory.mktemp("built") / "repo"
    shutil.copytree(digits_template, root)
    r = datakiln.Repo(root)
    rng = random.Random(0)
    train = [x for x in r.ls() if x["split"] == "train"]
    picked = rng.sample(train, 70)
    r.label_many([(x["id"], str((int(x["label"]) + 3) % 10)) for x in picked[:30]])
    r.label_many([(x["id"], None) for x in picked[30:]])
    r.commit("plant 30 label errors, unlabel 40")
    datakiln.build(r, epochs=8, folds=3, progress=False)
    return root


@pytest.fixture
def built(built_template: Path, tmp_path: Path) -> datakiln.Repo:
    import shutil

    dest = tmp_path / "built"
    shutil.copytree(built_template, dest)
    return datakiln.Repo(dest)


def stop_process(proc: subprocess.Popen[str], sig: int = 15) -> None:
    """Signal a server process, wait for it, and close its pipes."""
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout=20)
    for f in (proc.stdout, proc.stderr):
        if f:
            f.close()


class UIServer:
    """A real ``kiln ui`` process on a free port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "datakiln", "-C", str(root), "ui", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise AssertionError(f"kiln ui did not start: {line}{self.proc.stderr.read() if self.proc.stderr else ''}")
        self.landing = line.split("at ", 1)[1].split()[0]
        self.url = self.landing.rsplit("/", 1)[0]

    def stop(self, sig: int = 15) -> None:
        stop_process(self.proc, sig)


CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Any:
    """Headless Chromium for one test (test_ui.py keeps one per module)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def ui_server(built: datakiln.Repo) -> Any:
    server = UIServer(built.root)
    yield server
    server.stop()


class HubServer:
    """A real ``kiln hub serve`` process on a free port, with user ``alice`` (a hub admin) and a
    credentials folder of its own; ``env`` is what client processes run with (alice logged in)."""

    def __init__(self, root: Path, config: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.root, self.config = root, config
        self.env = {**ENV, "KILN_CONFIG_HOME": str(config)}
        self.env.pop("KILN_TOKEN", None)
        if not (root / "hub.db").exists():
            self.token = kiln(
                "hub", "user", "add", "alice", "--admin", "--root", str(root), cwd=root.parent, env=self.env
            ).stdout.strip()
        self.extra = extra
        self.start()

    def start(self, port: int = 0) -> None:
        old = getattr(self, "proc", None)
        if old is not None:  # stopped or killed by a test: close its pipes before starting again
            stop_process(old)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "datakiln",
                "hub",
                "serve",
                "--root",
                str(self.root),
                "--port",
                str(port),
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise AssertionError(f"kiln hub did not start: {line}{self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = line.split("at ", 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def user(self, name: str, *extra: str) -> str:
        """Add a user; returns their first token."""
        return kiln(
            "hub", "user", "add", name, *extra, "--root", str(self.root), cwd=self.root.parent, env=self.env
        ).stdout.strip()

    def kiln(
        self, *args: str, cwd: Path | str, check: bool = True, token: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "KILN_TOKEN": token} if token else self.env
        return kiln(*args, cwd=cwd, check=check, env=env)

    def stop(self, sig: int = 15) -> None:
        stop_process(self.proc, sig)


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    server = HubServer(tmp_path / "hubroot", tmp_path / "config")
    server.kiln("login", server.url, "--token", server.token, cwd=tmp_path)
    yield server
    server.stop()
