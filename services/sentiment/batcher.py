"""Dynamic micro-batching: concurrent requests queue their texts, and one worker runs them through the
model in batches of up to ``max_batch_size`` texts, waiting at most ``max_wait_ms`` for a batch to fill."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client import Histogram

from shared.logging import get_logger

log = get_logger(__name__)

BATCH_SIZE = Histogram(
    "crm_sentiment_batch_size", "Texts per model batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
BATCH_SECONDS = Histogram("crm_sentiment_batch_seconds", "Model time per batch")

Predict = Callable[[Sequence[str]], np.ndarray]


class MicroBatcher:
    """``workers`` batches may run at once, each in its own model thread: 1 for torch (one forward
    already uses every core), one per core for ONNX Runtime sessions that run on one thread each
    (independent batches scale better on a few shared cores than one batch split across them)."""

    def __init__(
        self, predict: Predict, *, max_batch_size: int = 64, max_wait_ms: float = 5.0, workers: int = 1
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.workers = max(1, workers)
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[float]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sentiment-model")
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._slots = asyncio.Semaphore(self.workers)
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="sentiment-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for task in list(self._running):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.cancel()
        self._executor.shutdown(wait=True)

    async def submit(self, texts: Sequence[str]) -> list[float]:
        """P(positive) for each text, computed in whatever batches the queue forms."""
        loop = asyncio.get_running_loop()
        futures = []
        for text in texts:
            future: asyncio.Future[float] = loop.create_future()
            self._queue.put_nowait((text, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._slots is not None
        while True:
            # Wait for a free model thread first, so the queue keeps filling the next batch meanwhile.
            await self._slots.acquire()
            try:
                batch = await self._next_batch(loop)
            except BaseException:
                self._slots.release()
                raise
            live = [(text, future) for text, future in batch if not future.cancelled()]
            if not live:
                self._slots.release()
                continue
            task = loop.create_task(self._score(loop, live))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_batch(self, loop: asyncio.AbstractEventLoop) -> list[tuple[str, asyncio.Future[float]]]:
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _score(
        self, loop: asyncio.AbstractEventLoop, live: list[tuple[str, asyncio.Future[float]]]
    ) -> None:
        assert self._slots is not None
        started = time.perf_counter()
        try:
            probs = await loop.run_in_executor(self._executor, self._predict, [t for t, _ in live])
        except Exception as exc:
            log.exception("sentiment_batch_failed", size=len(live))
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._slots.release()
        BATCH_SIZE.observe(len(live))
        BATCH_SECONDS.observe(time.perf_counter() - started)
        for (_, future), prob in zip(live, probs, strict=True):
            if not future.done():
                future.set_result(float(prob))
