"""The ingest producer: librdkafka (``confluent-kafka``) with ``acks=all``, awaited per request.

Why not the fleet's kafka-python :class:`shared.kafka.EventPublisher` here: measured in process on the
embedded broker, kafka-python spends ~32 us of Python per record in ``send()`` (partitioner, record
builder, futures) against ~4 us for librdkafka's ``produce()`` plus delivery report, and ingest is the
one path of the fleet that publishes tens of thousands of events a second (docs/benchmarks.md, Gateway).

Every request hands its records to :meth:`IngestProducer.produce_batch` and awaits the returned future;
it resolves only when the broker acknowledged every record (``acks=all``) and fails with the first
delivery error otherwise. A background thread serves librdkafka's delivery reports.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from shared.logging import get_logger
from shared.settings import KafkaSettings

log = get_logger(__name__)

Record = tuple[str, bytes, bytes]
"""``(topic, value, key)``: one serialised CloudEvent and its partition key."""


class PublishFailed(Exception):
    """The broker refused or never acknowledged a record of the batch (or the queue stayed full)."""


class _BatchAcks:
    """Counts the delivery reports of one batch and resolves its asyncio future from the poll thread."""

    __slots__ = ("_error", "_future", "_lock", "_loop", "_remaining")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self._remaining = count
        self._error: str | None = None
        self._loop = loop
        self._future = future
        self._lock = threading.Lock()

    def delivered(self, error: RdKafkaError | None, _message: Message) -> None:
        with self._lock:
            self._remaining -= 1
            if error is not None and self._error is None:
                self._error = str(error)
            done = self._remaining == 0
        if done:
            self._loop.call_soon_threadsafe(self._resolve)

    def abandon(self, unsent: int, reason: str) -> None:
        """``unsent`` records never reached librdkafka: the batch fails once the others reported."""
        with self._lock:
            self._remaining -= unsent
            self._error = self._error or reason
            done = self._remaining == 0
        if done:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self._future.done():  # the request already gave up (timeout) and answered 503
            return
        if self._error is None:
            self._future.set_result(None)
        else:
            self._future.set_exception(PublishFailed(self._error))


class IngestProducer:
    """One librdkafka producer per gateway process; thread-safe ``produce``, reports served by a thread."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str,
        message_timeout_s: float,
        linger_ms: int = 5,
    ) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": ",".join(settings.servers()),
                "client.id": client_id,
                "acks": "all",
                # One request in flight per connection keeps per-key order even when a send is retried
                # (as the fleet's kafka-python publisher does); librdkafka still batches per partition.
                "max.in.flight.requests.per.connection": 1,
                "enable.idempotence": False,
                # kafka-python's (and Java's) partitioner: murmur2 of the key. librdkafka's default
                # (CRC32) would put a customer's gateway events on another partition than the same
                # customer's events from the fleet's other producers, and lose their order.
                "partitioner": "murmur2_random",
                "linger.ms": linger_ms,
                "batch.size": 1024 * 1024,
                "compression.type": "none",
                # librdkafka gives up on a record about when the request that carried it answered 503, so
                # events the client was told to retry are seldom delivered late as well (consumers
                # de-duplicate by event id either way).
                "message.timeout.ms": max(1000, int(message_timeout_s * 1000)),
                "error_cb": self._on_error,
                # librdkafka's own log lines go through the service's logging (served by poll()).
                "logger": logging.getLogger("services.gateway.librdkafka"),
            }
        )
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve_reports, name="ingest-producer", daemon=True)
        self._thread.start()

    def _on_error(self, error: RdKafkaError) -> None:
        # Connection errors are retried by librdkafka; requests waiting on them time out and answer 503.
        log.warning("ingest_producer_error", error=str(error))

    def _serve_reports(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def produce_batch(
        self, records: Sequence[Record], loop: asyncio.AbstractEventLoop, timeout_s: float
    ) -> asyncio.Future[None]:
        """Queue every record (blocking while librdkafka's queue is full, up to ``timeout_s``); the
        future resolves on the event loop once all are acknowledged. Call from any thread."""
        future: asyncio.Future[None] = loop.create_future()
        if not records:
            loop.call_soon_threadsafe(future.set_result, None)
            return future
        acks = _BatchAcks(len(records), loop, future)
        deadline = time.monotonic() + timeout_s
        produce = self._producer.produce
        for index, (topic, value, key) in enumerate(records):
            while True:
                try:
                    produce(topic, value, key, on_delivery=acks.delivered)
                    break
                except BufferError:
                    # The local queue is full (broker slow or away): wait for room, not forever.
                    if time.monotonic() > deadline:
                        acks.abandon(len(records) - index, "the producer queue stayed full")
                        return future
                    time.sleep(0.005)
                except KafkaException as exc:
                    acks.abandon(len(records) - index, str(exc))
                    return future
        return future

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop the report thread."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("ingest_producer_unflushed", records=remaining)
        self._closed.set()
        self._thread.join(timeout=5)
        self._producer.close()
