"""The HTTP layer: the real app through httpx.ASGITransport, and a real ``kiln ui`` on a port."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import datakiln
from datakiln.server.app import create_app
from datakiln.server.workspace import Workspace

from .conftest import ENV, UIServer, kiln, kiln_json, snapshot_files

TOKEN = "test-token"
HOSTS = {"127.0.0.1:8000"}


def state_files(root: Path) -> dict[str, int]:
    """Repository files, without the disposable caches (thumbnails, decoded pixels)."""
    return {k: v for k, v in snapshot_files(root).items() if "/cache/" not in k}


class Client:
    """Synchronous calls into the ASGI app (one event loop per call keeps tests plain)."""

    def __init__(self, root: Path) -> None:
        self.app = create_app(Workspace(root), token=TOKEN, hosts=HOSTS)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        headers = {"x-kiln-token": TOKEN, **kw.pop("headers", {})}
        return self.request("POST", path, json=body, headers=headers, **kw)


@pytest.fixture
def client(built: datakiln.Repo) -> Client:
    return Client(built.root)


def first_item(c: Client, query: str = "") -> dict[str, Any]:
    return c.get(f"/api/gallery?limit=1&{query}").json()["items"][0]  # type: ignore[no-any-return]


def test_state_changes_need_the_token_and_this_origin(client: Client, built: datakiln.Repo) -> None:
    eid = first_item(client)["id"]
    before = state_files(built.root)
    body = {"items": [{"id": eid, "label": "5"}]}
    assert client.request("POST", "/api/label", json=body).status_code == 403
    assert client.post("/api/label", body, headers={"x-kiln-token": "guess"}).status_code == 403
    r = client.post("/api/label", body, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "origin" in r.json()["error"]
    assert state_files(built.root) == before
    r = client.post("/api/label", body, headers={"origin": "http://127.0.0.1:8000"})
    assert r.status_code == 200
    assert datakiln.Repo(built.root).find(eid)["label"] == "5"


def test_only_loopback_host_names_are_answered(client: Client) -> None:
    r = client.get("/api/status", headers={"host": "attacker.example:8000"})
    assert r.status_code == 403 and "not this server" in r.json()["error"]


def test_get_never_changes_the_repository(client: Client, built: datakiln.Repo) -> None:
    item = first_item(client)
    bid = datakiln.builds(built)[-1].id
    cid = built.head()[1]
    job = built.dir / "jobs" / "20260101-000000-abcdef"  # a job another server started, now over
    job.mkdir(parents=True)
    (job / "job.json").write_text('{"id": "20260101-000000-abcdef", "pid": null, "started": 0}')
    before = state_files(built.root)
    paths = [
        "/",
        "/review",
        "/api/status",
        "/api/facets",
        "/api/gallery?sort=issue&issue=1",
        f"/api/examples/{item['id']}",
        "/api/review",
        "/api/queue",
        "/api/changes",
        "/api/log",
        f"/api/commits/{cid}",
        f"/api/compare?a={cid}&b={cid}",
        "/api/builds",
        f"/api/builds/{bid}/report",
        f"/api/builds/{bid}/map",
        f"/api/compare-builds?a={bid}&b={bid}",
        f"/img/{item['blob']}",
        f"/thumb/{item['blob']}",
        f"/api/jobs/{job.name}",
    ]
    for p in paths:
        assert client.get(p).status_code == 200, p
    assert state_files(built.root) == before


def test_no_request_path_reaches_the_filesystem(client: Client, built: datakiln.Repo) -> None:
    commit_object = built.head()[1]
    assert commit_object is not None
    for p in [
        "/img/..%2F..%2Fconfig.json",
        "/thumb/" + "../" * 5 + "etc/passwd",
        f"/img/{commit_object}",  # a store object that is not an image
        "/static/..%2F..%2F..%2F.kiln%2Fconfig.json",
        "/api/jobs/..%2F..%2Fconfig.json",
        "/api/examples/..%2F..%2Fetc",
        "/api/builds/..%2Fbuilds/report",
        "/etc/passwd",
    ]:
        r = client.get(p)
        assert r.status_code in (400, 404), (p, r.status_code)
        assert "repo_id" not in r.text and "root:" not in r.text


def test_images_have_types_and_cache_forever(client: Client, built: datakiln.Repo, tmp_path: Path) -> None:
    big = tmp_path / "big" / "cat"
    big.mkdir(parents=True)
    Image.new("RGB", (400, 300), (10, 120, 200)).save(big / "wide.jpg", quality=90)
    built.import_folder(tmp_path / "big", jobs=1)
    item = first_item(client, "search=wide")
    r = client.get(f"/img/{item['blob']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "immutable" in r.headers["cache-control"] and r.headers["etag"] == f'"{item["blob"]}"'
    assert client.get(f"/img/{item['blob']}", headers={"if-none-match": r.headers["etag"]}).status_code == 304
    t = client.get(f"/thumb/{item['blob']}")
    assert t.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(t.content)).size) == 128
    cached = built.dir / "cache" / "thumbs" / item["blob"][:2] / item["blob"]
    assert cached.read_bytes() == t.content
    small = first_item(client, "search=digits/0000")
    s = client.get(f"/thumb/{small['blob']}")
    assert s.headers["content-type"] == "image/png" and s.content == built.store.get(small["blob"])


def test_review_accept_keep_undo_commit(client: Client, built: datakiln.Repo) -> None:
    review = client.get("/api/review").json()
    assert review["total"] >= 20
    a, b = review["items"][0], review["items"][1]
    accepted = client.post("/api/accept", {"ids": [a["id"]], "expect": {a["id"]: a["label"]}}).json()
    assert [(x["id"], x["label"]) for x in accepted] == [(a["id"], a["suggested"])]
    kept = client.post("/api/keep", {"ids": [b["id"]]}).json()
    after = client.get("/api/review").json()
    assert {a["id"], b["id"]}.isdisjoint(x["id"] for x in after["items"])
    assert kiln_json("issues", cwd=built.root) == after_cli_issues(built, exclude={a["id"], b["id"]})
    # Undo the keep: b is suspected again, and nothing of it is staged.
    assert client.post("/api/restore", {"undo": kept[0]["undo"]}).status_code == 200
    r = client.post("/api/restore", {"undo": kept[0]["undo"]})  # a token undoes once
    assert r.status_code == 400 and "no longer available" in r.json()["error"]
    # An undo names nothing but its token: forged fields are ignored, the recorded label returns.
    again = client.post("/api/keep", {"ids": [b["id"]]}).json()[0]["undo"]
    r = client.post("/api/restore", {"undo": again, "id": b["id"], "label": "0", "source": "human:mallory"})
    assert r.status_code == 200
    assert datakiln.Repo(built.root).find(b["id"])["source"] == b["source"]
    assert b["id"] in {x["id"] for x in client.get("/api/review").json()["items"]}
    edits = client.get("/api/changes").json()["edits"]
    assert [e["id"] for e in edits] == [a["id"]] and edits[0]["new"] == a["suggested"]
    r = client.post("/api/commit", {"message": "fix one suspected error"})
    assert r.status_code == 200
    cid = r.json()["commit"]
    shown = client.get(f"/api/commits/{cid}").json()
    counts = {"added": 0, "removed": 0, "relabeled": 1, "confirmed": 0, "newly_labeled": 0, "unlabeled": 0}
    assert shown["counts"] == counts
    assert shown["relabeled"][0]["blob"] == a["blob"]
    history = client.get(f"/api/examples/{a['id']}").json()["history"]
    assert history[0]["commit"] == cid and history[0]["label"] == a["suggested"]
    assert history[-1]["event"] == "imported"


def after_cli_issues(repo: datakiln.Repo, exclude: set[str]) -> list[dict[str, Any]]:
    from datakiln.review import label_issues

    return [
        {k: x[k] for k in ("id", "given", "suggested", "score", "rank")}
        for x in label_issues(datakiln.Repo(repo.root))
        if x["id"] not in exclude
    ]


def test_bad_input_is_refused_by_name_and_changes_nothing(client: Client, built: datakiln.Repo) -> None:
    eid = first_item(client)["id"]
    before = state_files(built.root)
    r = client.post("/api/label", {"items": [{"id": eid, "label": "ok"}, {"id": "zz", "label": "x"}]})
    assert r.status_code in (400, 404) and "zz" in r.json()["error"]
    r = client.post("/api/label", {"items": [{"id": eid, "label": "a\nb"}]})
    assert r.status_code == 400 and "label" in r.json()["error"]
    r = client.request("POST", "/api/label", content=b"{not json", headers={"x-kiln-token": TOKEN})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert client.post("/api/commit", {"message": "  "}).status_code == 400
    assert client.post("/api/commit", {"message": "nothing"}).status_code == 409
    r = client.post("/api/builds", {"overrides": {"width": "wide"}})
    assert r.status_code == 400 and "width" in r.json()["error"]
    r = client.get("/api/gallery?sort=best")
    assert r.status_code == 400 and "sort" in r.json()["error"]
    assert state_files(built.root) == before


def test_labelling_queue_fills_and_suggests(client: Client) -> None:
    assert client.get("/api/queue").json()["items"] == []
    picked = client.post("/api/queue", {"n": 5, "strategy": "margin"}).json()
    queue = client.get("/api/queue").json()
    assert [x["id"] for x in queue["items"]] == [p["id"] for p in picked]
    assert all(x["label"] is None and x["suggestion"] in queue["classes"] for x in queue["items"])
    first = queue["items"][0]
    client.post("/api/label", {"items": [{"id": first["id"], "label": first["suggestion"]}]})
    assert first["id"] not in {x["id"] for x in client.get("/api/queue").json()["items"]}


def test_gallery_filters_match_the_table(client: Client, built: datakiln.Repo) -> None:
    rows = built.ls()
    by = client.get("/api/gallery?label=3&split=train&limit=500").json()
    assert by["total"] == sum(1 for r in rows if r["label"] == "3" and r["split"] == "train")
    assert client.get("/api/gallery?unlabeled=1").json()["total"] == 40
    human = client.get("/api/gallery?source=human&limit=500").json()
    assert human["total"] == 30 and all(x["source"].startswith("human:") for x in human["items"])
    ink = client.get("/api/gallery?meta=ink%3Dlight&limit=1").json()["total"]
    assert ink == sum(1 for r in rows if r["meta"].get("ink") == "light")
    issues = client.get("/api/gallery?issue=1&sort=issue&limit=500").json()["items"]
    assert [x["issue"] for x in issues] == sorted(x["issue"] for x in issues)
    unc = client.get("/api/gallery?sort=uncertainty&limit=50").json()["items"]
    tops = [sorted(client.get(f"/api/examples/{x['id']}").json()["probs"].values())[-2:] for x in unc[:5]]
    margins = [1 - (p1 - p2) for p2, p1 in tops]  # uncertainty: 1 when the two best classes tie
    assert margins == sorted(margins, reverse=True)
    page2 = client.get("/api/gallery?sort=id&offset=100&limit=100").json()["items"]
    assert [x["id"] for x in page2] == sorted(r["id"] for r in rows)[100:200]


def test_confusion_cell_filter_counts_match_the_report(client: Client, built: datakiln.Repo) -> None:
    b = datakiln.builds(built)[-1]
    rep = client.get(f"/api/builds/{b.id}/report").json()
    split, matrix, classes = rep["confusion"]["split"], rep["confusion"]["matrix"], rep["classes"]
    for i in range(len(classes)):
        for j in (i, (i + 1) % len(classes)):
            q = f"/api/gallery?build={b.id}&split={split}&given={classes[i]}&predicted={classes[j]}&limit=1"
            assert client.get(q).json()["total"] == matrix[i][j]


def test_embedding_map_is_parallel_lists(client: Client, built: datakiln.Repo) -> None:
    m = client.get(f"/api/builds/{datakiln.builds(built)[-1].id}/map").json()
    n = len(m["ids"])
    assert n == m["total"] == 1797
    assert len(m["x"]) == len(m["y"]) == len(m["label"]) == len(m["pred"]) == n
    assert max(map(abs, m["x"])) == pytest.approx(1.0) and max(map(abs, m["y"])) == pytest.approx(1.0)


# ---- a real server on a real port ---------------------------------------------------------------


def token_of(url: str) -> str:
    html = httpx.get(url + "/gallery").text
    m = re.search(r'name="kiln-token" content="([^"]+)"', html)
    assert m
    return m.group(1)


def post(url: str, path: str, body: Any, token: str) -> httpx.Response:
    return httpx.post(url + path, json=body, headers={"x-kiln-token": token}, timeout=30)


def test_a_saved_label_survives_kill_9(built: datakiln.Repo) -> None:
    server = UIServer(built.root)
    try:
        token = token_of(server.url)
        eid = httpx.get(server.url + "/api/gallery?limit=1").json()["items"][0]["id"]
        assert post(server.url, "/api/label", {"items": [{"id": eid, "label": "7"}]}, token).status_code == 200
    finally:
        server.stop(signal.SIGKILL)
    assert datakiln.Repo(built.root).staged_edits()[0]["new"] == "7"
    again = UIServer(built.root)
    try:
        edits = httpx.get(again.url + "/api/changes").json()["edits"]
        assert [(e["id"], e["new"]) for e in edits] == [(eid, "7")]
    finally:
        again.stop()


def test_two_tabs_editing_at_once_lose_nothing(built: datakiln.Repo) -> None:
    server = UIServer(built.root)
    try:
        token = token_of(server.url)
        ids = [x["id"] for x in httpx.get(server.url + "/api/gallery?limit=60").json()["items"]]
        errors: list[str] = []

        def tab(chunk: list[str], label: str) -> None:
            for eid in chunk:
                r = post(server.url, "/api/label", {"items": [{"id": eid, "label": label}]}, token)
                if r.status_code != 200:
                    errors.append(r.text)

        tabs = [threading.Thread(target=tab, args=(ids[k::3], f"tab{k}")) for k in range(3)]
        for t in tabs:
            t.start()
        for t in tabs:
            t.join()
        assert not errors
        staged = {e["id"]: e["new"] for e in httpx.get(server.url + "/api/changes").json()["edits"]}
        assert staged == {eid: f"tab{i % 3}" for i, eid in enumerate(ids)}
    finally:
        server.stop()


def test_a_build_job_reports_progress_and_can_be_cancelled(built: datakiln.Repo) -> None:
    server = UIServer(built.root)
    try:
        token = token_of(server.url)
        job = post(server.url, "/api/builds", {"overrides": {"epochs": 40, "folds": 0}}, token).json()
        assert job["state"] == "running"
        seen = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = httpx.get(f"{server.url}/api/jobs/{job['id']}").json()
            if st["progress"] and st["progress"].get("phase") == "train" and st["progress"]["fraction"] > 0:
                seen = st["progress"]
                break
            time.sleep(0.1)
        assert seen is not None and 0 < seen["fraction"] <= 1 and seen["epochs"] == 40
        assert post(server.url, f"/api/jobs/{job['id']}/cancel", {}, token).status_code == 200
        while httpx.get(f"{server.url}/api/jobs/{job['id']}").json()["state"] == "running":
            time.sleep(0.1)
        assert httpx.get(f"{server.url}/api/jobs/{job['id']}").json()["state"] == "cancelled"
        assert len(datakiln.builds(datakiln.Repo(built.root))) == 1
        assert not list((built.root / ".kiln" / "tmp").glob("build-*"))
    finally:
        server.stop()


def test_listening_beyond_loopback_warns_and_still_checks_the_host(built: datakiln.Repo) -> None:
    import socket

    proc = subprocess.Popen(
        [sys.executable, "-m", "datakiln", "-C", str(built.root), "ui", "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" at ", 1)[1].split()[0].rsplit("/", 1)[0]
        port = url.rsplit(":", 1)[1]
        assert httpx.get(url + "/api/status").status_code == 200
        assert httpx.get(url + "/api/status", headers={"host": f"{socket.gethostname()}:{port}"}).status_code == 200
        # A rebinding page's own name is refused, even though the server listens everywhere.
        assert httpx.get(url + "/api/status", headers={"host": f"attacker.example:{port}"}).status_code == 403
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "warning: listening on 0.0.0.0" in err


def test_pages_of_other_sites_cannot_read_or_embed(client: Client) -> None:
    blob = first_item(client)["blob"]
    cross = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}
    assert client.get(f"/img/{blob}", headers=cross).status_code == 403
    assert client.get(f"/img/{blob}").headers["cross-origin-resource-policy"] == "same-origin"
    link = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    assert client.get("/review", headers=link).status_code == 200  # following a link to the app


def test_a_busy_port_is_named(built: datakiln.Repo) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "datakiln", "-C", str(built.root), "ui", "--port", str(port)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=30,
        )
    assert proc.returncode == 1 and f"127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr


def test_the_shell_page_escapes_the_repository_name(tmp_path: Path) -> None:
    root = tmp_path / 'a<b>"c'
    datakiln.Repo.init(root)
    html = Client(root).get("/gallery").text
    assert "<title>kiln · a&lt;b&gt;&quot;c</title>" in html and "<b>" not in html


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_uploads_are_checked_like_an_import(client: Client, built: datakiln.Repo) -> None:
    from .conftest import png

    good = {"name": "C:\\photos\\red.png", "label": "9", "data": b64(png((250, 0, 0)))}
    bad = {"name": "notes.png", "label": "9", "data": b64(b"this is not a PNG")}
    before = state_files(built.root)
    r = client.post("/api/import", {"files": [good, bad]})
    assert r.status_code == 400 and "notes.png" in r.json()["error"]
    assert state_files(built.root) == before  # one bad file refuses the batch
    for name in ("..", "a/..", ""):
        r = client.post("/api/import", {"files": [{**good, "name": name}]})
        assert r.status_code == 400, name
    r = client.post("/api/import", {"files": [{**good, "data": "%%%"}]})
    assert r.status_code == 400 and "base64" in r.json()["error"]
    r = client.post("/api/import", {"files": [good]})
    assert r.json() == {"added": 1, "present": 0, "bad": []}
    row = client.get("/api/gallery?search=upload/red.png").json()["items"][0]
    assert row["label"] == "9" and row["name"] == "upload/red.png"
    assert client.post("/api/import", {"files": [good]}).json()["present"] == 1
    big = client.request(
        "POST", "/api/import", content=b"x", headers={"x-kiln-token": TOKEN, "content-length": str(2**30)}
    )
    assert big.status_code == 413 and "at most" in big.json()["error"]


def test_a_label_changed_elsewhere_is_not_overwritten(client: Client, built: datakiln.Repo) -> None:
    """Two tabs show the same unlabeled example: the second decision is refused, not lost."""
    eid = client.get("/api/gallery?unlabeled=1&limit=1").json()["items"][0]["id"]
    first = client.post("/api/label", {"items": [{"id": eid, "label": "1", "expect": None}]})
    assert first.status_code == 200
    second = client.post("/api/label", {"items": [{"id": eid, "label": "2", "expect": None}]})
    assert second.status_code == 409 and "someone else changed it" in second.json()["error"]
    assert datakiln.Repo(built.root).find(eid)["label"] == "1"
    # Undo of the first decision is refused too once someone else has moved the label on.
    kiln("label", eid[:10], "3", cwd=built.root)
    r = client.post("/api/restore", {"undo": first.json()[0]["undo"]})
    assert r.status_code == 409
    assert datakiln.Repo(built.root).find(eid)["label"] == "3"


def test_malformed_requests_get_named_400s(client: Client) -> None:
    eid = first_item(client)["id"]
    cases = [
        ("/api/label", {"items": [{"id": eid}]}),
        ("/api/label", {"items": [{"id": eid, "label": 5}]}),
        ("/api/queue", {"n": True}),
        ("/api/queue", {"strategy": "nope"}),
        ("/api/accept", {"ids": [eid], "expect": "x"}),
        ("/api/restore", {"undo": 12}),
    ]
    for path, body in cases:
        r = client.post(path, body)
        assert r.status_code == 400 and "error" in r.json(), (path, body, r.text)
    deep = b'{"items":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = client.request("POST", "/api/label", content=deep, headers={"x-kiln-token": TOKEN})
    assert r.status_code == 400
    for path in ("/api/log?n=-1", "/api/log?offset=-3", "/api/compare?a=HEAD", "/api/compare-builds"):
        r = client.get(path)
        assert r.status_code == 400 and "error" in r.json(), path
    assert client.get("/api/label").status_code == 404
    assert client.request("DELETE", "/api/status", headers={"x-kiln-token": TOKEN}).json()["error"]
    assert client.get("/api/jobs/20261127-000000-abcdef").status_code == 404
    r = client.post("/api/commit", {"message": "red \x1b[31m text"})
    assert r.status_code == 400 and "control characters" in r.json()["error"]


def _token(url: str) -> str:
    m = re.search(r'name="kiln-token" content="([^"]+)"', httpx.get(url + "/gallery", timeout=30).text)
    assert m
    return m.group(1)


@pytest.mark.slow
def test_endless_and_stalled_requests_are_bounded(built: datakiln.Repo) -> None:
    """A chunked body cannot pass the size limit by leaving out its length; half-sent requests are
    dropped after a deadline; a thousand of them do not stop the server answering others; and
    refusals carry the same security headers as every other response."""
    import socket

    from datakiln.server.app import BODY_MAX, SECURITY_HEADERS
    from datakiln.server.protocol import HEAD_TIMEOUT

    server = UIServer(built.root)
    try:
        host, port = server.url.split("//")[1].split(":")
        token = _token(server.url)
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(
            f"POST /api/label HTTP/1.1\r\nHost: {host}:{port}\r\nX-Kiln-Token: {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"[" * (1 << 20)
        sent = 0
        try:
            while sent < 4 * BODY_MAX:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed while we were still sending: the point
        reply = sock.recv(65536).decode(errors="replace")
        sock.close()
        assert reply.startswith("HTTP/1.1 413") and sent < 2 * BODY_MAX, (sent, reply[:200])

        resp = httpx.post(server.url + "/api/label", json={}, timeout=30)  # no token
        assert resp.status_code == 403 and all(k in resp.headers for k in SECURITY_HEADERS)
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(
            f"POST /api/label HTTP/1.1\r\nHost: {host}:{port}\r\nX-Kiln-Token: {token}\r\n"
            f"Content-Length: {BODY_MAX + 1}\r\n\r\n".encode()
        )
        head = sock.recv(65536).decode(errors="replace").lower()
        sock.close()
        assert head.startswith("http/1.1 413") and all(k.lower() in head for k in SECURITY_HEADERS), head

        idle = []
        for _ in range(1100):
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(b"GET /api/status HT")  # and nothing more
            idle.append(s)
        dribble = socket.create_connection((host, int(port)), timeout=30)
        stop = threading.Event()

        def drip() -> None:  # a byte of header every second: the head's deadline must not move
            try:
                while not stop.wait(1.0):
                    dribble.sendall(b"X-Slow: y\r\n"[:1])
            except OSError:
                pass

        threading.Thread(target=drip, daemon=True).start()
        assert httpx.get(server.url + "/api/status", timeout=30).status_code == 200
        time.sleep(HEAD_TIMEOUT + 3)
        stop.set()
        assert dribble.recv(1) == b"", "a head sent a byte at a time outlived its deadline"
        dribble.close()
        closed = sum(1 for s in idle if s.recv(1) == b"")
        for s in idle:
            s.close()
        assert closed == len(idle)
        assert httpx.get(server.url + "/api/status", timeout=30).status_code == 200
    finally:
        server.stop()
