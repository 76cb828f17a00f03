"""``kiln serve`` as a real process under 16 concurrent HTTP clients: every answer right, requests
batched, limits refused with a message."""

from __future__ import annotations

import base64
import http.client
import io
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datakiln
from tests.conftest import ENV, stop_process

pytestmark = pytest.mark.slow


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8)).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def _multipart(files: list[bytes]) -> tuple[bytes, str]:
    b = "kiln-test-boundary"
    body = b"".join(
        f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="x{i}.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    )
    return body + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


class Served:
    def __init__(self, package: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "datakiln", "serve", str(package), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + (self.proc.stderr.read() if self.proc.stderr else "")
        self.port = int(line.split("http://127.0.0.1:", 1)[1].split()[0])

    def request(self, method: str, path: str, body: bytes | None = None, kind: str = "") -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": kind} if kind else {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()


@pytest.fixture
def package(built_template: Path) -> Path:
    (build,) = [d for d in (built_template / ".kiln/builds").iterdir() if (d / "package").is_dir()]
    return build / "package"


def test_sixteen_clients_get_right_batched_answers(package: Path) -> None:
    model = datakiln.load(package)
    images = [_png(i) for i in range(32)]
    expected = model.predict(images).labels
    server = Served(package)
    errors: list[str] = []

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for i in range(20):
            k = (c * 20 + i) % len(images)
            if i % 3 == 0:
                body, kind = _multipart([images[k]])
            elif i % 3 == 1:
                body, kind = json.dumps({"image": base64.b64encode(images[k]).decode()}).encode(), "application/json"
            else:
                body, kind = images[k], "image/png"
            conn.request("POST", "/predict", body=body, headers={"Content-Type": kind})
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            if resp.status != 200 or answer["predictions"][0]["label"] != expected[k]:
                errors.append(f"{resp.status} {answer}")
        conn.close()

    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        status, health = server.request("GET", "/health")
        stats = health["stats"]
        assert status == 200 and stats["images"] == 320 and stats["batches"] < 320 and stats["largest_batch"] > 1
        # Several images in one request keep their order; probabilities sum to 1.
        status, answer = server.request("POST", "/predict", *_multipart(images[:5]))
        assert status == 200 and [p["label"] for p in answer["predictions"]] == expected[:5]
        assert abs(sum(answer["predictions"][0]["probs"].values()) - 1) < 1e-4
        status, meta = server.request("GET", "/metadata")
        assert status == 200 and meta["classes"] == model.classes and meta["input"]["size"] == [8, 8]
        # Bad input is refused with a message, and the server goes on.
        status, answer = server.request("POST", "/predict", *_multipart([images[0], b"not an image"]))
        assert status == 400 and "x1.png: not an image" in answer["error"]
        status, answer = server.request("POST", "/predict", b"{}", "application/json")
        assert status == 400 and "BASE64" in answer["error"]
        status, answer = server.request("POST", "/predict", b"x", "text/plain")
        assert status == 400 and "Content-Type text/plain" in answer["error"]
        status, answer = server.request("POST", "/predict", *_multipart([images[0]] * 65))
        assert status == 413 and "at most 64" in answer["error"]
        status, answer = server.request("GET", "/predict")
        assert status == 405
        assert server.request("POST", "/predict", images[1], "image/png")[0] == 200
    finally:
        stop_process(server.proc)


def test_a_body_over_the_limit_is_refused(package: Path) -> None:
    server = Served(package, "--max-body-mb", "0.001")
    try:
        status, answer = server.request("POST", "/predict", b"x" * 5000, "image/png")
        assert status == 413 and "over 1,048 bytes" in answer["error"]
    finally:
        stop_process(server.proc)
