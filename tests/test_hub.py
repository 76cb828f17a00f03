"""``kiln hub`` with real processes: a hub on a free port and ``kiln`` clients talking to it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import datakiln
from datakiln.repo.transfer import objects_to_send
from datakiln.store import wire
from tests.conftest import ENV, HubServer


def _publish(hub: Any, repo: datakiln.Repo, name: str = "alice/digits", *flags: str) -> str:
    hub.kiln("hub", "create", name, *flags, cwd=repo.root)
    url = f"{hub.url}/{name}"
    hub.kiln("remote", "add", "origin", url, cwd=repo.root)
    hub.kiln("push", "origin", "main", cwd=repo.root)
    return url


def _clone(hub: Any, url: str, dest: Path, *flags: str) -> datakiln.Repo:
    hub.kiln("clone", url, str(dest), *flags, cwd=dest.parent)
    return datakiln.Repo(dest)


def _hub_repo(hub: Any, name: str = "alice/digits") -> datakiln.Repo:
    return datakiln.Repo(hub.root / "repos" / name)


def test_push_then_full_and_labels_only_clones(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    url = _publish(hub, digits)
    full = _clone(hub, url, tmp_path / "full")
    assert full.fsck().ok and full.resolve("main") == digits.resolve("main")
    assert full.table("main").blobs == digits.table("main").blobs
    assert full.tracking("origin") == {"main": digits.resolve("main")}
    part = _clone(hub, url, tmp_path / "part", "--labels-only")
    report = part.fsck()
    assert report.ok and report.promised == len(digits.table("main"))
    # Export needs every image: the partial clone fetches them in batches, then matches the full one.
    hub.kiln("export", str(tmp_path / "p.out"), cwd=part.root)
    hub.kiln("export", str(tmp_path / "f.out"), cwd=full.root)
    for split in ("train", "valid", "test"):
        assert (tmp_path / "p.out" / f"{split}.parquet").read_bytes() == (
            tmp_path / "f.out" / f"{split}.parquet"
        ).read_bytes()
    assert datakiln.Repo(part.root).fsck().promised == 0


def test_two_clones_edit_different_examples_and_both_land(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    url = _publish(hub, digits)
    a, b = _clone(hub, url, tmp_path / "a"), _clone(hub, url, tmp_path / "b")
    ids = a.table().ids
    a.label(ids[1], "7")
    a.commit("a: one label")
    b.label(ids[2], "5")
    b.commit("b: another")
    hub.kiln("push", cwd=a.root)
    refused = hub.kiln("push", cwd=b.root, check=False)
    assert refused.returncode == 1 and "not a fast-forward" in refused.stderr and "kiln pull" in refused.stderr
    pulled = hub.kiln("pull", cwd=b.root)
    assert "merged" in pulled.stdout
    st = hub.kiln("status", "--json", cwd=b.root)
    assert json.loads(st.stdout)["upstream"] == {"upstream": "origin/main", "ahead": 2, "behind": 0}
    hub.kiln("push", cwd=b.root)
    table = _hub_repo(hub).table("main")
    assert table.label_of(ids[1])[0] == "7" and table.label_of(ids[2])[0] == "5"
    assert _hub_repo(hub).fsck().ok


def test_a_conflict_on_one_example_is_named_by_id(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    url = _publish(hub, digits)
    a, b = _clone(hub, url, tmp_path / "a"), _clone(hub, url, tmp_path / "b")
    eid = a.table().ids[3]
    a.label(eid, "1")
    a.commit("a says 1")
    b.label(eid, "2")
    b.commit("b says 2")
    hub.kiln("push", cwd=a.root)
    pulled = hub.kiln("pull", cwd=b.root, check=False)
    assert pulled.returncode == 1 and eid in pulled.stdout


def test_eight_clients_push_at_once_and_no_commit_is_lost(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    url = _publish(hub, digits)
    clones = [_clone(hub, url, tmp_path / f"c{i}") for i in range(8)]
    ids = digits.table().ids
    commits = []
    for i, c in enumerate(clones):
        c.label(ids[10 + i], str(i))
        commits.append(c.commit(f"edit {i}"))
    env = {**hub.env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "datakiln", "push", "--json"],
            cwd=c.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in clones
    ]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outcomes.append((p.returncode, out, err))
    landed = [i for i, (rc, _, _) in enumerate(outcomes) if rc == 0]
    assert len(landed) == 1, outcomes  # all started from the same commit: one fast-forward wins
    for rc, _, err in outcomes:
        if rc:
            assert "not a fast-forward" in err or "fetch first" in err, err
    # The refused ones pull (a row-level merge) and push again until every edit is on the hub.
    pending = [c for i, c in enumerate(clones) if i not in landed]
    for _ in range(20):
        if not pending:
            break
        c = pending.pop(0)
        hub.kiln("pull", cwd=c.root)
        if hub.kiln("push", cwd=c.root, check=False).returncode:
            pending.append(c)
    hosted = _hub_repo(hub)
    head = hosted.resolve("main")
    assert all(datakiln.repo.history.is_ancestor(hosted.store, c, head) for c in commits)
    table = hosted.table("main")
    assert [table.label_of(ids[10 + i])[0] for i in range(8)] == [str(i) for i in range(8)]
    assert hosted.fsck().ok


def _raw_push(
    port: int, path: str, token: str, body: bytes, *, length: int | None = None
) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Length", str(length if length is not None else len(body)))
    conn.endheaders()
    conn.send(body)
    return conn


def test_kill_9_of_the_hub_mid_push_leaves_every_ref_on_a_complete_commit(
    hub: Any, digits: datakiln.Repo, tmp_path: Path
) -> None:
    _publish(hub, digits)
    hosted = _hub_repo(hub)
    before = hosted.resolve("main")
    digits.label(digits.table().ids[0], "9")
    new = digits.commit("after the crash")
    objects = objects_to_send(digits.store, [new], [])[0]  # everything, as a fresh push
    body = wire.frame({"updates": [{"ref": "refs/heads/main", "old": before, "new": new, "force": False}]})
    body += wire.encode(digits.store, objects)
    conn = _raw_push(hub.port, "/alice/digits/kiln/push", hub.token, body[: len(body) // 2], length=len(body))
    time.sleep(0.5)
    hub.proc.send_signal(signal.SIGKILL)
    hub.proc.wait(timeout=10)
    conn.close()
    hub.start(hub.port)
    hosted = _hub_repo(hub)
    assert hosted.resolve("main") == before and hosted.fsck().ok
    hub.kiln("-C", str(hosted.root), "gc", "--prune", "now", cwd=tmp_path)
    assert not list(hosted.tmp_dir.iterdir())
    hub.kiln("push", cwd=digits.root)  # and the push goes through once the hub is back
    assert _hub_repo(hub).resolve("main") == new


def test_private_repositories_tokens_and_roles(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    url = _publish(hub, digits, "alice/secret", "--private")
    bob = hub.user("bob")
    anon = HubServer.__new__(HubServer)
    anon.env = {k: v for k, v in hub.env.items() if k != "KILN_TOKEN"}
    anon.env["KILN_CONFIG_HOME"] = str(tmp_path / "nobody")
    nobody = subprocess.run(
        [sys.executable, "-m", "datakiln", "clone", url, str(tmp_path / "x")],
        env=anon.env,
        capture_output=True,
        text=True,
    )
    assert nobody.returncode == 1 and "not on this hub, or you may not see it" in nobody.stderr  # 404, not 403
    no_role = hub.kiln("clone", url, str(tmp_path / "y"), cwd=tmp_path, check=False, token=bob)
    assert no_role.returncode == 1 and "may not see it" in no_role.stderr and not (tmp_path / "y").exists()
    hub.kiln("hub", "grant", "alice/secret", "bob", "read", cwd=tmp_path)
    c = _clone_as(hub, url, tmp_path / "bob", bob)
    c.label(c.table().ids[0], "3")
    c.commit("bob's edit")
    denied = hub.kiln("push", cwd=c.root, check=False, token=bob)
    assert denied.returncode == 1 and "read access" in denied.stderr
    hub.kiln("hub", "grant", "alice/secret", "bob", "write", cwd=tmp_path)
    hub.kiln("push", cwd=c.root, token=bob)
    # Forcing is a permission: write may not, admin may.
    c.refs.update("refs/heads/main", digits.resolve("main"), c.resolve("main"))
    forced = hub.kiln("push", "--force", cwd=c.root, check=False, token=bob)
    assert forced.returncode == 1 and "admin" in forced.stderr
    hub.kiln("push", "--force", cwd=c.root)
    assert _hub_repo(hub, "alice/secret").resolve("main") == digits.resolve("main")
    # A read-only token cannot push; a revoked or expired one is refused outright.
    read_only = hub.kiln(
        "hub", "token", "add", "bob", "--scope", "read", "--root", str(hub.root), cwd=tmp_path
    ).stdout.strip()
    hub.kiln("pull", cwd=c.root, token=read_only)
    c.label(c.table().ids[1], "4")
    c.commit("read-only token's edit")
    assert "read access" in hub.kiln("push", cwd=c.root, check=False, token=read_only).stderr
    expired = hub.kiln(
        "hub", "token", "add", "bob", "--days", "-1", "--root", str(hub.root), cwd=tmp_path
    ).stdout.strip()
    assert "expired or revoked" in hub.kiln("fetch", cwd=c.root, check=False, token=expired).stderr
    tid = bob.split("_")[1]
    hub.kiln("hub", "token", "revoke", tid, "--root", str(hub.root), cwd=tmp_path)
    assert "expired or revoked" in hub.kiln("fetch", cwd=c.root, check=False, token=bob).stderr


def _clone_as(hub: Any, url: str, dest: Path, token: str) -> datakiln.Repo:
    hub.kiln("clone", url, str(dest), cwd=dest.parent, token=token)
    return datakiln.Repo(dest)


def _post(port: int, path: str, token: str, body: bytes) -> tuple[int, Any]:
    conn = _raw_push(port, path, token, body)
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read() or b"null")
    conn.close()
    return out


def test_bad_pushes_change_nothing(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    _publish(hub, digits)
    hosted = _hub_repo(hub)
    head = hosted.resolve("main")
    packs = sorted(p.name for p in hosted.store.pack_dir.iterdir())
    digits.label(digits.table().ids[0], "9")
    new = digits.commit("edit")
    objects = objects_to_send(digits.store, [new], [head])[0]

    def push(update: dict[str, Any], pack: bytes) -> tuple[int, Any]:
        return _post(hub.port, "/alice/digits/kiln/push", hub.token, wire.frame({"updates": [update]}) + pack)

    ok = {"ref": "refs/heads/main", "old": head, "new": new, "force": False}
    good = wire.encode(digits.store, objects)
    damaged = bytearray(good)
    damaged[wire.HEADER.size + wire.RECORD.size + 3] ^= 1
    cases = {
        "malformed": (ok, b"garbage"),
        "hash": (ok, bytes(damaged)),
        "missing": (ok, wire.encode(digits.store, objects[1:])),
        "dotdot": ({**ok, "ref": "refs/heads/../../x"}, good),
        "control": ({**ok, "ref": "refs/heads/a\x1bb"}, good),
        "not an id": ({**ok, "new": "../x"}, good),
    }
    for name, (update, pack) in cases.items():
        status, answer = push(update, pack)
        assert status == 400, (name, status, answer)
        assert answer["error"], name
    small = HubServer.__new__(HubServer)  # the same hub, restarted with a small push limit
    hub.stop()
    small.__dict__.update(hub.__dict__)
    small.extra = ("--max-push", "100")
    small.start(hub.port)
    status, answer = push(ok, good)
    assert status == 413 and "limit" in answer["error"]
    hosted = _hub_repo(hub)
    assert hosted.resolve("main") == head and sorted(p.name for p in hosted.store.pack_dir.iterdir()) == packs
    assert not list(hosted.tmp_dir.iterdir()) and hosted.fsck().ok
    small.stop()


def test_change_requests_open_comment_approve_merge_and_conflicts(
    hub: Any, digits: datakiln.Repo, tmp_path: Path
) -> None:
    url = _publish(hub, digits)
    work = _clone(hub, url, tmp_path / "w")
    ids = work.table().ids
    work.checkout("fix-cats", create=True)
    work.label(ids[5], "8")
    work.commit("fix 5")
    hub.kiln("push", "origin", "fix-cats", cwd=work.root)
    opened = hub.kiln("request", "open", "--from", "fix-cats", "--to", "main", "-m", "fix a mislabel", cwd=work.root)
    assert "#1 opened" in opened.stdout and "1 relabeled" in opened.stdout
    hub.kiln("request", "comment", "1", "-m", "looks right", cwd=work.root)
    hub.kiln("request", "approve", "1", cwd=work.root)
    shown = json.loads(hub.kiln("request", "show", "1", "--json", cwd=work.root).stdout)
    assert shown["approvals"] == ["alice"] and shown["comments"][0]["body"] == "looks right" and shown["mergeable"]
    assert "#1" in hub.kiln("request", "list", cwd=work.root).stdout
    # Meanwhile main moves on another example: the merge is a real three-way, row-level merge.
    work.checkout("main")
    work.label(ids[6], "0")
    work.commit("main edit")
    hub.kiln("push", cwd=work.root)
    merged = json.loads(hub.kiln("request", "merge", "1", "--json", cwd=work.root).stdout)
    assert merged["result"] == "merged"
    table = _hub_repo(hub).table("main")
    assert table.label_of(ids[5])[0] == "8" and table.label_of(ids[6])[0] == "0"
    # A conflicting request changes nothing and names the example.
    hub.kiln("pull", cwd=work.root)
    work.checkout("other", create=True)
    work.label(ids[7], "1")
    work.commit("other says 1")
    hub.kiln("push", "origin", "other", cwd=work.root)
    work.checkout("main")
    work.label(ids[7], "2")
    work.commit("main says 2")
    hub.kiln("push", cwd=work.root)
    hub.kiln("request", "open", "--from", "other", "-m", "conflicting", cwd=work.root)
    before = _hub_repo(hub).resolve("main")
    refused = hub.kiln("request", "merge", "2", cwd=work.root, check=False)
    assert refused.returncode == 1 and ids[7] in refused.stderr
    assert _hub_repo(hub).resolve("main") == before
    assert ids[7] in hub.kiln("request", "show", "2", cwd=work.root).stdout


def test_a_labels_only_clone_builds_a_model(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    url = _publish(hub, digits)
    part = _clone(hub, url, tmp_path / "part", "--labels-only")
    hub.kiln("build", "--epochs", "1", "--folds", "0", cwd=part.root)
    assert datakiln.Repo(part.root).fsck().promised == 0  # the images came, in batches, and stayed
    assert len(datakiln.builds(datakiln.Repo(part.root))) == 1


def test_fetch_images_fills_a_partial_clone_ahead(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    url = _publish(hub, digits)
    part = _clone(hub, url, tmp_path / "part", "--labels-only")
    out = hub.kiln("fetch", "--images", "--split", "test", cwd=part.root).stdout
    n_test = sum(1 for s in digits.table().cols["split"] if s == "test")
    assert f"fetched {n_test:,} image(s)" in out
    assert datakiln.Repo(part.root).fsck().promised == len(digits.table()) - n_test


def test_no_op_fetch_and_push_are_one_request(hub: Any, digits: datakiln.Repo, tmp_path: Path) -> None:
    url = _publish(hub, digits)
    c = _clone(hub, url, tmp_path / "c")
    fetched = json.loads(hub.kiln("fetch", "--json", cwd=c.root).stdout)
    pushed = json.loads(hub.kiln("push", "--json", cwd=c.root).stdout)
    assert (fetched["requests"], fetched["objects"], fetched["updated"]) == (1, 0, {})
    assert (pushed["requests"], pushed["status"]) == (1, "up-to-date")


def test_clone_of_a_missing_repository_leaves_no_directory(hub: Any, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "datakiln", "clone", f"{hub.url}/alice/nothing", str(tmp_path / "n")],
        env={**ENV, "KILN_CONFIG_HOME": str(hub.config)},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "alice/nothing" in r.stderr and not (tmp_path / "n").exists()
    assert os.listdir(tmp_path).count("n") == 0


def test_huggingface_hub_downloads_a_commit_as_parquet_matching_kiln_export(
    hub: Any, digits: datakiln.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import snapshot_download

    _publish(hub, digits, "alice/pub")
    commit = digits.resolve("main")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for rev in ("main", commit):
        out = Path(
            snapshot_download(
                "alice/pub", repo_type="dataset", endpoint=hub.url, revision=rev, local_dir=tmp_path / f"hf-{rev[:8]}"
            )
        )
        assert (out / "README.md").read_text().startswith("---\n")
        assert commit in (out / "README.md").read_text()
    hub.kiln("export", str(tmp_path / "exported"), cwd=digits.root)
    for split in ("train", "valid", "test"):
        assert (out / "data" / f"{split}.parquet").read_bytes() == (
            tmp_path / "exported" / f"{split}.parquet"
        ).read_bytes()
    # A private repository is invisible to the client without a token, and visible with one.
    _publish_private = hub.kiln("hub", "create", "alice/hidden", "--private", cwd=digits.root)
    assert _publish_private.returncode == 0
    hub.kiln("push", f"{hub.url}/alice/hidden", "main", cwd=digits.root)
    from huggingface_hub.errors import RepositoryNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("alice/hidden", repo_type="dataset", endpoint=hub.url, token=False, local_dir=tmp_path / "no")
    got = snapshot_download(
        "alice/hidden", repo_type="dataset", endpoint=hub.url, token=hub.token, local_dir=tmp_path / "yes"
    )
    assert (Path(got) / "data" / "train.parquet").is_file()


def test_demo_shares_through_a_hub_it_starts(
    digits: datakiln.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datakiln.cli import main
    from datakiln.cli.demo import share

    monkeypatch.setenv("KILN_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("KILN_TOKEN", "")  # share() sets it; monkeypatch puts it back
    digits.checkout("relabel", create=True)
    digits.label(digits.table().ids[0], "8")
    digits.commit("relabel one")
    digits.checkout("main")
    assert share(str(digits.root), main) == 0
    clone = datakiln.Repo(str(digits.root) + "-clone")
    assert clone.partial == "origin" and clone.resolve("origin/relabel") == digits.resolve("relabel")
    hosted = datakiln.Repo(Path(str(digits.root) + "-hub") / "repos" / "demo" / "digits")
    assert hosted.resolve("main") == digits.resolve("main") and hosted.fsck().ok


@pytest.mark.parametrize("name", ["../x", "a/b", "a\x1bb", "..", ".hidden", "x.lock", "a" * 65])
def test_bad_repository_names_are_refused_and_create_nothing(hub: Any, tmp_path: Path, name: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    body = json.dumps({"owner": "alice", "name": name}).encode()
    conn.request("POST", "/api/v1/repos", body=body, headers={"Authorization": f"Bearer {hub.token}"})
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    assert resp.status == 400 and "not allowed" in answer["error"]
    assert not (hub.root / "repos" / "alice").exists() or not any((hub.root / "repos" / "alice").iterdir())


def test_reserved_user_names_are_refused(hub: Any, tmp_path: Path) -> None:
    r = hub.kiln("hub", "user", "add", "api", "--root", str(hub.root), cwd=tmp_path, check=False)
    assert r.returncode == 1 and "reserved" in r.stderr
