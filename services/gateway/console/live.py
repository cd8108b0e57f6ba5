"""Live events for the console: what arrives on the interactions topic and its dead-letter topic.

A librdkafka consumer in a daemon thread reads every partition of both topics from their end, outside any
consumer group (like the 360 cache's listener), and keeps the last :data:`KEPT` events in memory, each
with a sequence number. The server-sent-events route sends a browser every event past the last number it
saw. The thread starts on the first visit to the live page, so a gateway nobody watches reads nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from shared.contracts import Topic, dead_letter_topic
from shared.kafka import DLQ_DETAIL, DLQ_REASON
from shared.logging import get_logger
from shared.settings import KafkaSettings

log = get_logger(__name__)

KEPT = 500
LIVE_TOPICS = (Topic.INTERACTIONS.value, dead_letter_topic(Topic.INTERACTIONS.value))
CLOCK_SLACK_MS = 1000
"""Records stamped up to this long before the listener began are still shown (producers' clocks differ)."""
REASSIGN_S = 5.0
"""While a topic is missing (no event published yet), look for it again this often."""


@dataclass(frozen=True)
class LiveEvent:
    seq: int
    received_at: datetime
    dead: bool
    event_type: str
    event_id: str
    customer: str
    source: str
    reason: str = ""
    detail: str = ""


def _headers(message: Message) -> dict[str, str]:
    headers: list[tuple[str, bytes | None]] = message.headers() or []  # type: ignore[assignment]
    return {name: (value or b"").decode("utf-8", "replace") for name, value in headers}


def _customer_of(data: Any) -> str:
    """The identifier a sender named the customer by (shown as sent; the profile resolves it later)."""
    if not isinstance(data, dict) or not isinstance(data.get("customer"), dict):
        return ""
    ref = data["customer"]
    for kind in ("customer_id", "anonymous_id", "email", "phone"):
        if ref.get(kind):
            return f"{kind}: {ref[kind]}"
    return ""


def describe(message: Message, seq: int) -> LiveEvent:
    """An event as the live view shows it; a record that is not a CloudEvent is shown for what it is."""
    headers = _headers(message)
    dead = str(message.topic()).endswith(".dlq")
    attributes: dict[str, Any] = {}
    data: Any = None
    if "ce_specversion" in headers and headers.get("content-type") != "application/cloudevents+json":
        attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
        with contextlib.suppress(ValueError):
            data = json.loads(message.value() or b"")
    else:
        with contextlib.suppress(ValueError):
            parsed = json.loads(message.value() or b"")
            if isinstance(parsed, dict):
                attributes = parsed
                data = parsed.get("data")
    key = message.key()
    return LiveEvent(
        seq=seq,
        received_at=datetime.now(UTC),
        dead=dead,
        event_type=str(attributes.get("type") or "(not a CloudEvent)")[:200],
        event_id=str(attributes.get("id") or "")[:200],
        customer=(_customer_of(data) or (key.decode("utf-8", "replace") if key else ""))[:200],
        source=str(attributes.get("source") or "")[:200],
        reason=headers.get(DLQ_REASON, "")[:200] if dead else "",
        detail=headers.get(DLQ_DETAIL, "")[:500] if dead else "",
    )


class LiveEvents:
    """The last events of :data:`LIVE_TOPICS`, read from their end by a daemon thread started on demand."""

    def __init__(self, settings: KafkaSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._events: deque[LiveEvent] = deque(maxlen=KEPT)
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self.missing_topics: list[str] = []

    @property
    def listening(self) -> bool:
        """Both topics are assigned: an event published from now on will be shown."""
        return self._listening.is_set()

    @property
    def last_seq(self) -> int:
        return self._seq

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="console-live-events", daemon=True)
                self._thread.start()

    def since(self, seq: int) -> list[LiveEvent]:
        """Events after ``seq``, oldest first."""
        with self._lock:
            return [e for e in self._events if e.seq > seq]

    def recent(self, n: int) -> list[LiveEvent]:
        with self._lock:
            return list(self._events)[-n:]

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": ",".join(self._settings.servers()),
                "client.id": self._client_id,
                # Partitions are assigned by hand (no group membership); the id is only a formality.
                "group.id": f"{self._client_id}-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "fetch.wait.max.ms": 50,
                "logger": logging.getLogger("services.gateway.librdkafka"),
            }
        )

    def _assign_from_end(self, consumer: Consumer) -> None:
        metadata = consumer.list_topics(timeout=10)
        partitions: list[TopicPartition] = []
        missing: list[str] = []
        for topic in LIVE_TOPICS:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                missing.append(topic)
                continue
            for partition in info.partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                partitions.append(TopicPartition(topic, partition, high))
        consumer.assign(partitions)
        self.missing_topics = missing
        self._listening.set()

    def _append(self, messages: list[Message], since_ms: int) -> None:
        with self._lock:
            for message in messages:
                # The embedded broker's high watermark can trail the log's end, so the first fetch may
                # return records published before the listener began: those are not "live".
                if message.error() is None and message.timestamp()[1] >= since_ms:
                    self._seq += 1
                    self._events.append(describe(message, self._seq))

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = self._consumer()
            try:
                since_ms = int(time.time() * 1000) - CLOCK_SLACK_MS
                self._assign_from_end(consumer)
                assigned_at = time.monotonic()
                while not self._stop.is_set():
                    self._append(consumer.consume(num_messages=500, timeout=0.1), since_ms)
                    if self.missing_topics and time.monotonic() - assigned_at > REASSIGN_S:
                        break  # look for the missing topic again (new partitions start at their end)
            except (KafkaException, RuntimeError) as exc:
                self._listening.clear()
                log.warning("console_live_listener_restarting", error=str(exc))
                self._stop.wait(1.0)
            finally:
                with contextlib.suppress(RuntimeError, KafkaException):
                    consumer.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
