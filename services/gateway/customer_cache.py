"""A per-customer cache of the 360, kept fresh by the fleet's own events about that customer.

A repeat read of a customer's 360 is served from memory instead of four calls to the services. An
entry is dropped as soon as this process sees any event about the customer: a resolved interaction,
sentiment scored, churn risk changed, segment membership changed, a merge (both ids), an erasure, a
reaction, and the gateway's own writes (trait updates, merges, erasure). Because recsys and churn apply
an interaction without announcing it, an answer fetched within ``settle_s`` of an event about the
customer is not stored (the next read fans out again). For changes no event announces (model
retraining, a churn score that moves within its band) an entry older than ``ttl_s`` is refreshed by one
background fan-out on its next read, and none is served past ``2 * ttl_s``.

The events come from a librdkafka consumer in a daemon thread that reads every partition of those
topics from the end, outside any consumer group (each gateway replica sees every event). The cache
serves only while that thread has polled within the last second; otherwise every read fans out.
Answers with a degraded part, a 404 and merged-away ids are never stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.gateway.metrics import C360_CACHE
from shared.contracts import Topic
from shared.logging import get_logger
from shared.settings import KafkaSettings

log = get_logger(__name__)

# Topics whose events change some part of a customer's 360. On these the record key is the canonical
# customer id, so the value need not be parsed.
KEYED_TOPICS = (
    Topic.INTERACTIONS_RESOLVED.value,
    Topic.RECOMMENDATION_REACTION.value,
    Topic.ACTION_REACTION.value,
)
# Low-volume fleet events, read in full (a merge names two customers).
PARSED_TOPICS = (
    Topic.SENTIMENT_SCORED.value,
    Topic.CHURN_RISK_CHANGED.value,
    Topic.SEGMENT_MEMBERSHIP_CHANGED.value,
    Topic.CUSTOMER_MERGED.value,
    Topic.CUSTOMER_ERASED.value,
)
INVALIDATING_TOPICS = KEYED_TOPICS + PARSED_TOPICS
LIVENESS_S = 1.0
"""The cache serves only while the event thread has polled within this many seconds."""


class Customer360Cache:
    """Serialised 360 answers by requested customer id. ``get``/``put`` run on the event loop, ``evict``
    on the event thread; one lock keeps a fill that raced an event from being stored."""

    def __init__(self, *, ttl_s: float, settle_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.settle_s = settle_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._touched: dict[str, float] = {}  # customer id -> when an event about them was last seen
        self._lock = threading.Lock()
        self._alive_until = 0.0
        self._pruned_at = 0.0
        self._cleared_at = float("-inf")
        # Fan-outs under way by customer id (asyncio tasks, used on the event loop by the reader).
        self.in_flight: dict[str, Any] = {}

    @property
    def live(self) -> bool:
        return time.monotonic() < self._alive_until

    def heartbeat(self) -> None:
        """The event thread is polling and has applied every event it received."""
        self._alive_until = time.monotonic() + LIVENESS_S

    def stop_serving(self) -> None:
        with self._lock:
            self._alive_until = 0.0
            self._entries.clear()

    def lookup(self, customer_id: str) -> tuple[bytes, bool] | None:
        """``(answer, stale)``: stale once older than ``ttl_s`` (serve it and refresh it); nothing once
        older than twice that, or while the event thread is not live."""
        now = time.monotonic()
        if now >= self._alive_until:
            return None
        entry = self._entries.get(customer_id)
        if entry is None or entry[0] + self.ttl_s <= now:
            return None
        return entry[1], entry[0] <= now

    def count(self, outcome: str) -> None:
        C360_CACHE.labels(outcome).inc()

    def put(self, customer_id: str, body: bytes, started: float) -> bool:
        """Store an answer whose fan-out began at ``started`` (``time.monotonic()``), unless an event
        about the customer came after ``started - settle_s`` or the fan-out took longer than
        ``settle_s`` (an event it raced may already be forgotten)."""
        with self._lock:
            now = time.monotonic()
            if now >= self._alive_until or now - started > self.settle_s:
                return False
            touched = max(self._touched.get(customer_id, float("-inf")), self._cleared_at)
            if touched >= started - self.settle_s:
                return False
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))  # the oldest insertion
            self._entries[customer_id] = (now + self.ttl_s, body)
            return True

    def evict(self, customer_ids: Iterable[str]) -> None:
        with self._lock:
            now = time.monotonic()
            for customer_id in customer_ids:
                self._entries.pop(customer_id, None)
                self._touched[customer_id] = now
                # Readers arriving from now on must not join a fan-out that began before the event.
                self.in_flight.pop(customer_id, None)
            if now - self._pruned_at > self.settle_s:
                # Events older than 2 * settle_s can no longer veto a fill (put refuses slower fills).
                horizon = now - 2 * self.settle_s
                self._touched = {k: t for k, t in self._touched.items() if t >= horizon}
                self._pruned_at = now

    def drop(self, customer_id: str) -> None:
        """Forget one entry (its refresh came back degraded or not found)."""
        with self._lock:
            self._entries.pop(customer_id, None)

    def clear(self) -> None:
        """Forget every entry (a change whose customers are not known here, e.g. a merge undone)."""
        with self._lock:
            self._entries.clear()
            self.in_flight.clear()
            self._cleared_at = time.monotonic()

    def __len__(self) -> int:
        return len(self._entries)


def customer_ids_of(topic: str, key: bytes | None, value: bytes | None) -> list[str]:
    """The customers an event is about: the key on keyed topics, the payload's ids on the others."""
    if topic in KEYED_TOPICS:
        return [key.decode("utf-8", "replace")] if key else []
    ids = [key.decode("utf-8", "replace")] if key else []
    try:
        event = json.loads(value) if value else None
    except ValueError:
        return ids
    if isinstance(event, dict):
        data = event.get("data")
        if isinstance(event.get("subject"), str):
            ids.append(event["subject"])
        if isinstance(data, dict):
            ids += [str(data[n]) for n in ("customer_id", "survivor_id", "merged_id") if data.get(n)]
    return ids


class InvalidationListener:
    """Reads :data:`INVALIDATING_TOPICS` from their end and evicts the customers they name."""

    def __init__(self, settings: KafkaSettings, cache: Customer360Cache, *, client_id: str) -> None:
        self.cache = cache
        self._consumer = Consumer(
            {
                "bootstrap.servers": ",".join(settings.servers()),
                "client.id": client_id,
                # Partitions are assigned by hand (no group membership); the id is only a formality.
                "group.id": f"{client_id}-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "fetch.wait.max.ms": 50,
                "logger": logging.getLogger("services.gateway.librdkafka"),
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="c360-invalidation", daemon=True)

    def start(self) -> InvalidationListener:
        self._thread.start()
        return self

    def _assign_from_end(self) -> None:
        metadata = self._consumer.list_topics(timeout=10)
        partitions: list[TopicPartition] = []
        for topic in INVALIDATING_TOPICS:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                log.warning("c360_cache_topic_missing", topic=topic)
                continue
            for partition in info.partitions:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                partitions.append(TopicPartition(topic, partition, high))
        self._consumer.assign(partitions)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._assign_from_end()
                while not self._stop.is_set():
                    messages = self._consumer.consume(num_messages=2000, timeout=0.1)
                    ids: list[str] = []
                    for message in messages:
                        if message.error() is None:
                            ids += customer_ids_of(str(message.topic()), message.key(), message.value())
                    if ids:
                        self.cache.evict(ids)
                    self.cache.heartbeat()
            except (KafkaException, RuntimeError) as exc:
                # Events may have been missed: forget everything and start again from the end.
                self.cache.stop_serving()
                log.warning("c360_cache_listener_restarting", error=str(exc))
                self._stop.wait(1.0)
        self.cache.stop_serving()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(RuntimeError, KafkaException):
            self._consumer.close()
