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
    def __init__(self, predict: Predict, *, max_batch_size: int = 64, max_wait_ms: float = 5.0) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[float]]] = asyncio.Queue()
        # One model thread: a forward pass already uses every core torch is given.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentiment-model")
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="sentiment-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
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
        while True:
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
            live = [(text, future) for text, future in batch if not future.cancelled()]
            if not live:
                continue
            started = time.perf_counter()
            try:
                probs = await loop.run_in_executor(self._executor, self._predict, [t for t, _ in live])
            except Exception as exc:
                log.exception("sentiment_batch_failed", size=len(live))
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            BATCH_SIZE.observe(len(live))
            BATCH_SECONDS.observe(time.perf_counter() - started)
            for (_, future), prob in zip(live, probs, strict=True):
                if not future.done():
                    future.set_result(float(prob))
