"""A small HTTP load generator: N kept-alive connections, each sending the same POST back to back.

Runs in its own process (``python bench/loadgen.py URL BODY_FILE CONTENT_TYPE --clients 16
--seconds 10``) and prints JSON: requests, errors, throughput, latency percentiles. asyncio with
raw sockets: a request costs the generator a few microseconds, so on a 2-core machine the
server, not the client, is what is measured (the same generator drives every server compared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def client(host: str, port: int, request: bytes, until: float, lat: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode("utf-8", "replace"))
    finally:
        writer.close()


async def run(url: str, body: bytes, kind: str, clients: int, seconds: float, warmup: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    if warmup:
        await asyncio.gather(
            *(client(host, port, request, time.perf_counter() + warmup, [], []) for _ in range(clients))
        )
    lat: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(client(host, port, request, t0 + seconds, lat, errors) for _ in range(clients)))
    wall = time.perf_counter() - t0
    lat.sort()

    def pct(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else 0.0

    return {
        "clients": clients,
        "requests": len(lat),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rps": round(len(lat) / wall, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("body")
    p.add_argument("content_type")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=1)
    a = p.parse_args()
    with open(a.body, "rb") as f:
        body = f.read()
    print(json.dumps(asyncio.run(run(a.url, body, a.content_type, a.clients, a.seconds, a.warmup))))


if __name__ == "__main__":
    main()
