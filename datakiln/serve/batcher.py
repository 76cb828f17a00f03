"""Requests that arrive together share one onnxruntime call.

Each request hands its encoded images to ``Batcher.predict`` and awaits a future. One worker
thread takes everything waiting (up to ``max_batch`` images; if fewer are waiting it waits for
more while they keep arriving, at most ``max_wait`` seconds), decodes the images, runs the graph once on the batch, and
resolves every future. While it runs, the next batch gathers, so under load batches grow by
themselves and an idle server answers a lone request after at most ``max_wait``. Decoding happens
in the worker too, so the event loop only speaks HTTP. The queue is bounded: past ``max_queue``
waiting images a request is refused at once (503) instead of waiting without end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BadImage, KilnError
from ..package import pixels

if TYPE_CHECKING:
    from ..package import Model


GAP = 0.0003  # seconds without a new image after which a batch stops waiting for more


class Busy(KilnError):
    """The queue is full: the client should retry shortly."""


@dataclass
class _Item:
    data: bytes
    name: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    queued: float = field(default_factory=time.perf_counter)


@dataclass
class Stats:
    requests: int = 0
    images: int = 0
    batches: int = 0
    largest_batch: int = 0
    refused: int = 0


class Batcher:
    def __init__(self, model: Model, *, max_batch: int = 64, max_wait: float = 0.002, max_queue: int = 4096) -> None:
        self.model = model
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self.stats = Stats()
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="kiln-serve-batcher", daemon=True)
        self._thread.start()

    async def predict(self, images: list[tuple[bytes, str]]) -> list[np.ndarray | Exception]:
        """Probabilities (K,) for each encoded image, or the error that image raised (a bad image
        fails alone, not the batch it shared)."""
        loop = asyncio.get_running_loop()
        items = [_Item(data, name, loop, loop.create_future()) for data, name in images]
        with self._cond:
            if len(self._items) + len(items) > self.max_queue:
                self.stats.refused += 1
                raise Busy(f"the server has {len(self._items)} images waiting; retry in a moment")
            self._items.extend(items)
            self.stats.requests += 1
            self._cond.notify()
        return [await i.future for i in items]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _take(self) -> list[_Item]:
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if self._closed:
                return []
            # Wait for company while it keeps coming: up to max_wait after the first image, but
            # stop at the first quiet GAP. Waiting the whole max_wait when every client is already
            # queued (16 clients, max_batch 64) only idles the model: that cost 40% of throughput.
            deadline = self._items[0].queued + self.max_wait
            while len(self._items) < self.max_batch and (left := deadline - time.perf_counter()) > 0:
                seen = len(self._items)
                self._cond.wait(min(left, GAP))
                if len(self._items) == seen:
                    break
            n = min(self.max_batch, len(self._items))
            return [self._items.popleft() for _ in range(n)]

    def _work(self) -> None:
        while batch := self._take():
            try:
                results = self._run(batch)
            except Exception as e:  # never leave a request waiting: a dead worker would hang them all
                results = [e] * len(batch)
            self.stats.images += len(batch)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
            for item, result in zip(batch, results):
                by_loop.setdefault(item.loop, []).append((item.future, result))
            for loop, pairs in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, pairs)  # one wake-up of each event loop per batch
                except RuntimeError:
                    pass  # that loop is closed: its requests are gone

    def _run(self, batch: list[_Item]) -> list[Any]:
        """Probabilities or the error of each item: a bad image fails alone."""
        results: list[Any] = [None] * len(batch)
        good, arrays = [], []
        size, channels = self.model.size, self.model.channels
        for i, item in enumerate(batch):
            try:
                arrays.append(pixels.decode(item.data, size, channels, item.name))
                good.append(i)
            except Exception as e:  # BadImage, or anything else Pillow raises on hostile bytes
                results[i] = e if isinstance(e, BadImage) else BadImage(f"{item.name}: cannot be decoded ({e!r})")
        if arrays:
            try:
                probs, _ = self.model.run(np.stack(arrays).astype(np.float32) / 255.0)
                for j, i in enumerate(good):
                    results[i] = probs[j]
            except Exception as e:  # onnxruntime's own errors: every request of the batch gets it
                for i in good:
                    results[i] = e
        return results


def _settle(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in pairs:
        if not future.done():  # the client may have gone away and its request been cancelled
            future.set_result(result)
