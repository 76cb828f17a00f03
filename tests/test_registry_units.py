"""The registry's pieces on their own: version ranges, references, kiln.lock, signing keys and
trust, the cache, and a download cut off by the network (a real HTTP server that drops the first
connection mid-body)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datakiln.errors import BadName, BadPackage, InputError, SignatureError
from datakiln.registry import keys
from datakiln.registry.cache import Cache
from datakiln.registry.client import Registry
from datakiln.registry.lockfile import Locked, read_lock, update_lock
from datakiln.registry.ref import parse_ref
from datakiln.registry.semver import Range, Version

V = Version.parse
PUBLISHED = ["0.9.0", "1.0.0", "1.2.0", "1.2.5", "1.3.0-beta.1", "1.9.9", "2.0.0-rc.1", "2.0.0", "2.1.0"]


@pytest.mark.parametrize(
    ("text", "best"),
    [
        ("^1.2", "1.9.9"),
        ("^1.2.5", "1.9.9"),
        ("~1.2", "1.2.5"),
        ("~1.2.3", "1.2.5"),
        ("1.2", "1.2.5"),
        ("1", "1.9.9"),
        ("1.2.0", "1.2.0"),
        ("=1.0.0", "1.0.0"),
        (">=1,<2", "1.9.9"),
        (">=1 <1.3", "1.2.5"),
        (">1.2", "2.1.0"),
        ("<=1.2", "1.2.5"),
        ("<1", "0.9.0"),
        ("^0.9", "0.9.0"),
        ("^1 || ^2", "2.1.0"),
        ("*", "2.1.0"),
        ("", "2.1.0"),
        ("1.3.0-beta.1", "1.3.0-beta.1"),
        ("^2.0.0-rc.1", "2.1.0"),
        ("^3", None),
        ("2.0.0-rc.2", None),
    ],
)
def test_ranges_pick_the_newest_allowed_version(text: str, best: str | None) -> None:
    found = Range(text).best(V(v) for v in PUBLISHED)
    assert (str(found) if found else None) == best


def test_pre_releases_only_match_ranges_that_name_them() -> None:
    assert not Range("^1.2").allows(V("1.3.0-beta.1"))
    assert not Range(">=1").allows(V("2.0.0-rc.1"))
    assert not Range(">1.2").allows(V("1.3.0-beta.1")) and not Range(">1").allows(V("2.0.0-rc.1"))
    assert Range(">=2.0.0-rc.1").allows(V("2.0.0-rc.1"))
    assert V("1.0.0-alpha") < V("1.0.0-alpha.1") < V("1.0.0-beta") < V("1.0.0-beta.2") < V("1.0.0-beta.11")
    assert V("1.0.0-rc.1") < V("1.0.0") and V("1.0.0+build.5").key() == V("1.0.0").key()


@pytest.mark.parametrize("bad", ["1.2", "01.2.3", "1.2.3.4", "v1.2.3", "1.2.3-", "x", "1.2.3-a..b"])
def test_bad_versions_say_what_a_version_is(bad: str) -> None:
    with pytest.raises(InputError, match="MAJOR.MINOR.PATCH"):
        V(bad)


@pytest.mark.parametrize("bad", ["^y", ">=1,<<2", "1.*.3", "^1.2.3.4", "~"])
def test_bad_ranges_are_refused_with_the_forms_that_work(bad: str) -> None:
    with pytest.raises(InputError, match="version range"):
        Range(bad)


versions = st.builds(lambda a, b, c: Version(a, b, c), st.integers(0, 4), st.integers(0, 4), st.integers(0, 4))


@given(st.lists(versions, min_size=1, max_size=12), versions)
def test_caret_is_the_same_major_at_least_the_version(pool: list[Version], base: Version) -> None:
    rng = Range(f"^{base}")
    for v in pool:
        expected = v.key() >= base.key() and (
            v.major == base.major
            if base.major
            else (v.major == 0 and (v.minor == base.minor if base.minor else v.minor == 0 and v.patch == base.patch))
        )
        assert rng.allows(v) == expected, (str(base), str(v))
    best = rng.best(pool)
    allowed = [v for v in pool if rng.allows(v)]
    assert best == (max(allowed, key=Version.key) if allowed else None)


def test_references() -> None:
    r = parse_ref("alice/digits-cnn@^1.2")
    assert (r.owner, r.name, str(r.range), r.hub) == ("alice", "digits-cnn", "^1.2", None)
    r = parse_ref("http://127.0.0.1:8900/alice/digits-cnn@1.2.0")
    assert r.hub == "http://127.0.0.1:8900" and str(r) == "http://127.0.0.1:8900/alice/digits-cnn@1.2.0"
    assert str(parse_ref("alice/x").range) == "*"
    for bad in ["alice", "alice/x/y", "../x@1", "alice/.x"]:
        with pytest.raises(BadName):
            parse_ref(bad)


def test_the_lock_round_trips_and_a_conflicting_dependency_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "kiln.lock"
    a = Locked("alice/a", "1.2.0", "a" * 64, "http://h:1", "alice", "k1", "^1.2", ["alice/base@1.0.0"])
    base = Locked("alice/base", "1.0.0", "b" * 64, "http://h:1", "alice", "k1")
    update_lock(lock, [a, base])
    assert read_lock(lock) == [a, base]
    update_lock(lock, [Locked("alice/base", "1.0.0", "b" * 64, "http://h:1", "alice", "k1", "^1")])
    with pytest.raises(InputError, match="alice/a 1.2.0 was built on alice/base 1.0.0"):
        update_lock(lock, [Locked("alice/base", "1.1.0", "c" * 64, "http://h:1", "alice", "k1")])
    assert {e.name: e.version for e in read_lock(lock)} == {"alice/a": "1.2.0", "alice/base": "1.0.0"}
    bad = lock.read_text().replace('name = "alice/a"', 'name = "alice/../a"')
    lock.write_text(bad)
    with pytest.raises(InputError, match="package 1 is not a lock entry"):
        read_lock(lock)
    lock.write_text("version = 7\n")
    with pytest.raises(InputError, match="lock version 7"):
        read_lock(lock)


def test_signatures_verify_only_the_signed_digest_with_a_trusted_key(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("KILN_CONFIG_HOME", str(tmp_path / "me"))
    with pytest.raises(InputError, match="kiln keygen"):
        keys.sign("0" * 64)
    mine = keys.keygen()
    assert (tmp_path / "me/keys/ed25519").stat().st_mode & 0o777 == 0o600
    with pytest.raises(InputError, match="already holds"):
        keys.keygen()
    digest = hashlib.sha256(b"manifest").hexdigest()
    sig = keys.sign(digest)
    assert keys.verify(mine["public"], digest, sig)
    assert not keys.verify(mine["public"], hashlib.sha256(b"other").hexdigest(), sig)
    keys.check_signature("anyone", mine["key_id"], digest, sig, "pkg")  # your own key signs for any name
    # Someone else's key: not trusted until trusted, and then only for that publisher.
    monkeypatch.setenv("KILN_CONFIG_HOME", str(tmp_path / "bob"))
    bob = keys.keygen()
    bob_sig = keys.sign(digest)
    monkeypatch.setenv("KILN_CONFIG_HOME", str(tmp_path / "me"))
    with pytest.raises(SignatureError, match="which you do not trust"):
        keys.check_signature("bob", bob["key_id"], digest, bob_sig, "pkg")
    keys.trust(bob["public"], "bob")
    keys.check_signature("bob", bob["key_id"], digest, bob_sig, "pkg")
    with pytest.raises(SignatureError, match="refusing to trust it for mallory"):
        keys.trust(bob["public"], "mallory")  # a trusted key is never re-bound to another publisher
    with pytest.raises(SignatureError, match="trusted as bob's"):
        keys.trust(bob["public"], None)  # nor promoted to "signs for anyone"
    with pytest.raises(SignatureError, match="do not trust"):
        keys.check_signature("mallory", bob["key_id"], digest, bob_sig, "pkg")
    with pytest.raises(SignatureError, match="does not verify"):
        keys.check_signature("bob", bob["key_id"], digest, sig, "pkg")


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Serves ``body``; the first request gets half of it and a closed connection."""

    body = b"x" * 300_000
    served = 0

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        type(self).served += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if type(self).served == 1:
            self.wfile.write(self.body[: len(self.body) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_download_cut_off_mid_way_is_retried_and_a_wrong_hash_is_not(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hub = f"http://127.0.0.1:{server.server_address[1]}"
        sha = hashlib.sha256(_Flaky.body).hexdigest()
        with Registry(hub, token="") as reg:
            reg.download("alice", "x", "1.0.0", sha, tmp_path / "a.zip")
        assert _Flaky.served == 2 and (tmp_path / "a.zip").read_bytes() == _Flaky.body
        with Registry(hub, token="") as reg, pytest.raises(BadPackage, match="Nothing was installed"):
            reg.download("alice", "x", "1.0.0", "0" * 64, tmp_path / "b.zip")
        assert _Flaky.served == 3  # a wrong hash is the hub's answer, not the network's: no retry
    finally:
        server.shutdown()
        server.server_close()


def test_the_cache_refuses_altered_bytes(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    tmp, f = cache.spool()
    f.write(b"package bytes")
    f.close()
    sha = hashlib.sha256(b"package bytes").hexdigest()
    cache.publish(tmp, sha, {"name": "alice/x", "version": "1.0.0"})
    assert cache.record(sha)["name"] == "alice/x" and cache.verified_bytes(sha) == b"package bytes"
    cache.archive(sha).write_bytes(b"package bytez")
    with pytest.raises(BadPackage, match="no longer matches its sha256"):
        cache.verified_bytes(sha)
    assert list(cache.tmp.iterdir()) == []
