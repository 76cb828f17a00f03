"""The registry end to end: a real ``kiln hub serve`` process, real ``kiln`` processes publishing
from one repository and installing into another folder with its own (empty) cache and keys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datakiln
from datakiln.errors import BadPackage, SignatureError
from datakiln.registry import Cache, read_lock
from datakiln.registry.client import Registry
from datakiln.registry.publish import prepare
from tests.conftest import CHROMIUM, ENV, HubServer, kiln
from tests.test_hub_pages import shot

pytestmark = pytest.mark.slow


class Published:
    """A hub with alice's build published as alice/digits 1.2.0 and 1.3.0."""

    def __init__(self, root: Path, built: Path) -> None:
        self.hub = HubServer(root / "hubroot", root / "alice")
        self.repo = root / "repo"
        shutil.copytree(built, self.repo)
        self.hub.kiln("login", self.hub.url, "--token", self.hub.token, cwd=root)
        self.hub.kiln("keygen", cwd=root)
        for v in ("1.2.0", "1.3.0"):
            self.hub.kiln("publish", "latest", "alice/digits", v, "--hub", self.hub.url, cwd=self.repo)
        self.root = root

    def user_env(self, name: str) -> dict[str, str]:
        """A user with their own config (keys, trust) and cache, and no token: packages are public."""
        env = {
            **ENV,
            "KILN_CONFIG_HOME": str(self.root / name / "config"),
            "KILN_CACHE_HOME": str(self.root / name / "cache"),
        }
        env["KILN_HUB"] = self.hub.url
        env.pop("KILN_TOKEN", None)
        return env


@pytest.fixture(scope="module")
def published(built_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    p = Published(tmp_path_factory.mktemp("registry"), built_template)
    yield p
    p.hub.stop()


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], cwd: Path) -> None:
    for k in ("KILN_CONFIG_HOME", "KILN_CACHE_HOME", "KILN_HUB"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.chdir(cwd)


def test_install_pins_verifies_loads_and_works_offline(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = published.user_env("bob")
    app = tmp_path / "app"
    app.mkdir()
    # A publisher nobody trusts yet is refused, and nothing is left in the cache.
    out = kiln("install", "alice/digits@^1.2", cwd=app, env=bob, check=False)
    assert out.returncode == 1 and "which you do not trust" in out.stderr and "--trust" in out.stderr
    assert Cache(Path(bob["KILN_CACHE_HOME"])).records() == []
    # Trust on first use: the newest 1.x, pinned by hash in kiln.lock.
    done = json.loads(kiln("install", "alice/digits@^1.2", "--trust", "--json", cwd=app, env=bob).stdout)
    assert [(d["name"], d["version"], d["downloaded"]) for d in done] == [("alice/digits", "1.3.0", True)]
    (entry,) = read_lock(app / "kiln.lock")
    assert (entry.version, entry.requested, entry.publisher) == ("1.3.0", "^1.2", "alice")
    with Registry(published.hub.url) as reg:
        info = reg.info("alice", "digits")
    assert entry.sha256 == next(v["sha256"] for v in info["versions"] if v["version"] == "1.3.0")
    # An exact pin moves the lock; the lock's pin is what datakiln.load uses.
    kiln("install", "alice/digits@1.2.0", cwd=app, env=bob)
    assert [e.version for e in read_lock(app / "kiln.lock")] == ["1.2.0"]
    _use(monkeypatch, bob, app)
    model = datakiln.load("alice/digits@^1.2")
    assert (model.name, model.manifest["version"], model.manifest["publisher"]) == ("alice/digits", "1.2.0", "alice")
    built = datakiln.load(str(published.repo / ".kiln/builds" / model.manifest["lineage"]["build"]))
    images = [np.asarray(np.random.default_rng(i).integers(0, 255, (8, 8)), np.uint8) for i in range(5)]
    assert np.allclose(model.predict(images).probs, built.predict(images).probs)
    # No range the hub can satisfy: the error lists what exists.
    out = kiln("install", "alice/digits@^2", cwd=app, env=bob, check=False)
    assert (
        out.returncode == 1 and "no version of alice/digits matches ^2; published versions: 1.2.0, 1.3.0" in out.stderr
    )
    out = kiln("install", "alice/nope", cwd=app, env=bob, check=False)
    assert out.returncode == 1 and "no package alice/nope" in out.stderr
    # Offline: the lock's hub is unreachable, the cache has the bytes.
    lock = app / "kiln.lock"
    lock.write_text(lock.read_text().replace(published.hub.url, "http://127.0.0.1:9"))
    done = json.loads(kiln("install", "--json", cwd=app, env=bob).stdout)
    assert [(d["version"], d["downloaded"]) for d in done] == [("1.2.0", False)]


def test_a_tampered_cache_is_refused_and_reinstalled(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    carol = published.user_env("carol")
    app = tmp_path / "app"
    app.mkdir()
    kiln("install", "alice/digits@1.2.0", "--trust", cwd=app, env=carol)
    (entry,) = read_lock(app / "kiln.lock")
    cache = Cache(Path(carol["KILN_CACHE_HOME"]))
    archive = cache.archive(entry.sha256)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    _use(monkeypatch, carol, app)
    with pytest.raises(BadPackage, match="altered or damaged"):
        datakiln.load("alice/digits@1.2.0")
    # A forged signature in the cache's record is refused too, even with good bytes.
    done = json.loads(kiln("install", "--json", cwd=app, env=carol).stdout)
    assert done[0]["downloaded"] is True
    record_path = archive.with_name(f"{entry.sha256}.json")
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "signature": record["signature"][::-1]}))
    with pytest.raises(SignatureError, match="does not verify"):
        datakiln.load("alice/digits@1.2.0")
    record_path.write_text(json.dumps(record))
    assert datakiln.load("alice/digits@1.2.0").name == "alice/digits"


def test_two_installs_at_once_share_one_cache_and_one_lock(published: Published, tmp_path: Path) -> None:
    dave = published.user_env("dave")
    app = tmp_path / "app"
    app.mkdir()
    kiln("trust", "alice", cwd=app, env=dave)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "datakiln", "install", "alice/digits@^1"],
            cwd=app,
            env=dave,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    cache = Cache(Path(dave["KILN_CACHE_HOME"]))
    assert [r["version"] for r in cache.records()] == ["1.3.0"]
    assert [e.version for e in read_lock(app / "kiln.lock")] == ["1.3.0"]
    assert not any(cache.tmp.iterdir())


def test_publishing_is_immutable_owned_and_signed(published: Published, tmp_path: Path) -> None:
    hub = published.hub
    again = hub.kiln("publish", "latest", "alice/digits", "1.2.0", "--hub", hub.url, cwd=published.repo, check=False)
    assert again.returncode == 1 and "already published and versions never change" in again.stderr
    bad = hub.kiln("publish", "latest", "alice/digits", "1.2", "--hub", hub.url, cwd=published.repo, check=False)
    assert bad.returncode == 1 and "MAJOR.MINOR.PATCH" in bad.stderr
    # A build that fails kiln.toml's [expect] is refused, unless forced; the package says it was.
    spec = published.repo / "kiln.toml"
    spec.write_text("[train]\nepochs = 8\nfolds = 3\n[expect]\naccuracy = 0.9999\n")
    try:
        args = ("publish", "latest", "alice/strict", "1.0.0", "--hub", hub.url)
        refused = hub.kiln(*args, cwd=published.repo, check=False)
        assert refused.returncode == 1 and "fails its expectations (accuracy)" in refused.stderr
        hub.kiln(*args, "--force", cwd=published.repo)
    finally:
        spec.unlink()
    with Registry(hub.url) as reg:
        forced = reg.version("alice", "strict", "1.0.0")["expect"]
    assert forced["forced"] is True and forced["passed"] is False
    # bob (not an admin) may not publish under alice/, and must publish signed with his own key.
    bob_token = hub.user("bob")
    env = {**hub.env, "KILN_CONFIG_HOME": str(tmp_path / "bob"), "KILN_TOKEN": bob_token}
    kiln("keygen", cwd=tmp_path, env=env)
    out = kiln("publish", "latest", "alice/digits", "9.0.0", "--hub", hub.url, cwd=published.repo, env=env, check=False)
    assert out.returncode == 1 and "bob may not publish under alice/" in out.stderr
    kiln("publish", "latest", "bob/digits", "0.1.0", "--hub", hub.url, cwd=published.repo, env=env)
    # A signature over anything but the archive's manifest is refused, and nothing is recorded.
    archive = Path(tmp_path / "pkg.zip")
    kiln("package", "latest", "-o", str(archive), cwd=published.repo)
    with Registry(hub.url, token=bob_token) as reg:
        key = next(iter(reg.keys("bob")))
        with pytest.raises(BadPackage, match="says it is"):
            reg.publish("bob", "digits", "0.2.0", archive.read_bytes(), "AAAA", key)
        alice_key = next(iter(reg.keys("alice").values()))
        with pytest.raises(SignatureError, match="no proof that bob holds key"):
            reg.add_key(alice_key, "AAAA")  # alice's public key is public; claiming it takes her private key
        data, _ = prepare(archive, "bob/digits", "0.2.0", "bob")
        with pytest.raises(SignatureError, match="does not verify"):
            reg.publish("bob", "digits", "0.2.0", data, "AAAA", key)
        assert [v["version"] for v in reg.info("bob", "digits")["versions"]] == ["0.1.0"]
    listed = json.loads(hub.kiln("packages", "--hub", hub.url, "--json", cwd=tmp_path).stdout)
    latest = {p["full_name"]: p["latest"] for p in listed}
    assert latest["alice/digits"] == "1.3.0" and latest["bob/digits"] == "0.1.0"
    info = hub.kiln("package", "info", "alice/digits@~1.2", "--hub", hub.url, cwd=tmp_path).stdout
    assert "* 1.2.0" in info and "classes (10)" in info and "lineage: repository" in info


def _digits(root: Path, keep: set[str], per_class: int | None = None) -> datakiln.Repo:
    """The digits sample with only the classes in ``keep``; ``per_class``: labels kept per class in train."""
    import random

    r = datakiln.Repo.init(root)
    r.import_sample("digits", jobs=1)
    rows = r.ls()
    r.rm([x["id"] for x in rows if x["label"] not in keep])
    if per_class is not None:
        by: dict[str, list[str]] = {}
        for x in rows:
            if x["label"] in keep and x["split"] == "train":
                by.setdefault(x["label"], []).append(x["id"])
        rng = random.Random(0)
        unlabel = [i for ids in by.values() for i in rng.sample(ids, len(ids) - per_class)]
        r.label_many([(i, None) for i in unlabel])
    r.commit("digits " + "".join(sorted(keep)))
    return r


def test_a_meld_build_on_a_published_backbone_beats_scratch_and_pins_it(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = published.hub
    monkeypatch.setenv("KILN_CONFIG_HOME", hub.env["KILN_CONFIG_HOME"])  # alice: her key, her token
    monkeypatch.setenv("KILN_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KILN_HUB", hub.url)
    low = _digits(tmp_path / "low", {"0", "1", "2", "3", "4"})
    base = datakiln.build(low, epochs=5, folds=0, progress=False)
    datakiln.registry.publish(base.build.package, "alice/digits04", "1.0.0", hub.url)
    high = _digits(tmp_path / "high", {"5", "6", "7", "8", "9"}, per_class=20)
    scratch = datakiln.build(high, epochs=2, folds=0, progress=False)
    (high.root / "kiln.toml").write_text('[model]\nbackbone = "alice/digits04@^1"\n[train]\nfolds = 0\n')
    meld = datakiln.build(high, epochs=2, progress=False)
    acc = {name: b.build.record["metrics"]["test"]["accuracy"] for name, b in (("scratch", scratch), ("meld", meld))}
    assert acc["meld"] >= acc["scratch"] + 0.08, acc  # the same network, labels and schedule
    # Lineage names the backbone by hash; the build id depends on it; the lock pins it.
    rec = meld.build.record
    assert rec["lineage"]["backbone"]["name"] == "alice/digits04" and meld.build.id != scratch.build.id
    (pin,) = read_lock(high.root / "kiln.lock")
    assert (pin.name, pin.version, pin.sha256) == ("alice/digits04", "1.0.0", rec["lineage"]["backbone"]["sha256"])
    assert datakiln.build(high, epochs=2, progress=False).cached
    # A package built on a backbone installs with it.
    datakiln.registry.publish(meld.build.package, "alice/digits59", "1.0.0", hub.url)
    erin = published.user_env("erin")
    app = tmp_path / "app"
    app.mkdir()
    done = json.loads(kiln("install", "alice/digits59@1", "--trust", "--json", cwd=app, env=erin).stdout)
    assert [(d["name"], d["version"]) for d in done] == [("alice/digits59", "1.0.0"), ("alice/digits04", "1.0.0")]
    assert {e.name for e in read_lock(app / "kiln.lock")} == {"alice/digits59", "alice/digits04"}
    # An input contract the backbone cannot take is refused with the reason.
    (high.root / "kiln.toml").write_text('[model]\nbackbone = "alice/digits04@^1"\n[input]\nsize = [16, 16]\n')
    with pytest.raises(datakiln.BadSpec, match=r"the backbone alice/digits04 1.0.0 takes \[8, 8\]"):
        datakiln.build(high, epochs=2, progress=False)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install -y chromium)")
def test_the_package_page_shows_the_card_and_tries_an_image(published: Published, browser: Any, tmp_path: Path) -> None:
    image = tmp_path / "seven.png"
    model = datakiln.load(str(published.repo / ".kiln/builds" / _build_id(published)))
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (8, 8)).astype(np.uint8), "L").save(image)
    expected = model.predict([str(image)]).labels[0]
    page = browser.new_page()
    page.goto(f"{published.hub.url}/packages")
    page.click("text=alice/digits")
    assert page.locator("h1").inner_text().startswith("alice/digits 1.3.0")
    text = page.locator("main").inner_text()
    for part in ("Model card", "Classes (10)", "Per class (test)", "Slices (out-of-sample)", "Lineage", "Versions"):
        assert part in text
    assert f"commit {model.manifest['lineage']['commit']}" in text and "kiln install alice/digits@1.3.0" in text
    page.click("text=1.2.0")
    assert page.locator("h1").inner_text().startswith("alice/digits 1.2.0")
    page.set_input_files("input[name=image]", str(image))
    page.click("text=Predict")
    assert page.locator("#prediction .label").inner_text() == expected
    assert page.locator("h1").inner_text().startswith("alice/digits 1.2.0")
    shot(page, "package-try-it")
    page.close()


def _build_id(p: Published) -> str:
    (build,) = [d.name for d in (p.repo / ".kiln/builds").iterdir() if (d / "package").is_dir()]
    return build
