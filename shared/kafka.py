"""The fleet's Kafka bus on kafka-python: a publisher and a consumer loop.

Guarantees of :class:`EventConsumer`:

* events of one key (customer) are handled in partition order;
* a batch's effect and the ids of its events are committed in one database transaction
  (:class:`shared.db.EventLedger`), and the Kafka offsets are committed only after that, so a crash at
  any point re-delivers at most events whose ids are already recorded: exactly once in effect;
* anything that cannot be applied (not JSON, not a CloudEvent, unknown type, payload that violates its
  schema, or a handler that still fails after bounded retries) goes to ``<topic>.dlq`` with headers
  naming the reason and the original topic/partition/offset, and consumption continues;
* ``stop()`` (wired to SIGTERM through the service's lifespan) finishes the batch in hand, commits and
  closes.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Annotated, Any, Literal, Union

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import Message as RdKafkaMessage
from confluent_kafka import Producer as RdKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import DefaultPartitioner, murmur2
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from sqlalchemy.orm import Session

from shared.contracts import EVENT_TYPES, CloudEvent, dead_letter_topic
from shared.db import EventLedger
from shared.logging import get_logger
from shared.metrics import (
    CONSUMER_LAG,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_FAILED,
    EVENTS_PUBLISHED,
    HANDLER_SECONDS,
)
from shared.settings import KafkaSettings

log = get_logger(__name__)


class DeadLetterReason:
    INVALID_JSON = "invalid_json"
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_PAYLOAD = "invalid_payload"
    HANDLER_ERROR = "handler_error"


# Header names on dead-lettered records.
DLQ_REASON = "crm-dlq-reason"
DLQ_DETAIL = "crm-dlq-detail"
DLQ_TOPIC = "crm-original-topic"
DLQ_PARTITION = "crm-original-partition"
DLQ_OFFSET = "crm-original-offset"
DLQ_GROUP = "crm-consumer-group"


def ensure_topics(settings: KafkaSettings, topics: Iterable[str], *, with_dead_letters: bool = True) -> None:
    """Create topics (and their ``.dlq``) if they are missing; existing ones are left alone."""
    if not settings.auto_create_topics:
        return
    names = set(topics)
    if with_dead_letters:
        names |= {dead_letter_topic(t) for t in names if not t.endswith(".dlq")}
    admin = KafkaAdminClient(bootstrap_servers=settings.servers(), client_id=f"{settings.client_id}-admin")
    try:
        existing = set(admin.list_topics())
        missing = sorted(names - existing)
        for name in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=settings.partitions,
                            replication_factor=settings.replication_factor,
                        )
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another service created it between list and create
        if missing:
            log.info("topics_created", topics=missing)
    finally:
        admin.close()


class KeyHashPartitioner(DefaultPartitioner):  # type: ignore[misc]  # kafka-python is untyped
    """kafka-python's default partitioner (murmur2 of the key, as the Java client and librdkafka's
    ``murmur2_random``), remembering the hash of recent keys: the hash is pure Python, and a service
    publishes many events per customer."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._hashes: dict[bytes, int] = {}
        self._capacity = capacity

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic) if serialized_key is not None else None
        if not partitions:  # no key (random partition), or a topic the producer does not know yet
            return int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        assert serialized_key is not None
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= self._capacity:
                self._hashes.clear()
            hashed = self._hashes[serialized_key] = int(murmur2(serialized_key)) & 0x7FFFFFFF
        return int(sorted(partitions)[hashed % len(partitions)])


class PublishFailed(Exception):
    """The broker refused or never acknowledged a published record."""


class EventPublisher:
    """Publishes CloudEvents with ``acks=all``; the key keeps one customer's events in order."""

    def __init__(self, settings: KafkaSettings, *, client_id: str | None = None, linger_ms: int = 5) -> None:
        self.settings = settings
        self._producer = KafkaProducer(
            bootstrap_servers=settings.servers(),
            client_id=client_id or settings.client_id,
            acks="all",
            linger_ms=linger_ms,
            retries=5,
            # One request in flight per connection keeps per-key order even when a send is retried.
            max_in_flight_requests_per_connection=1,
            batch_size=256 * 1024,
            compression_type=None,
            partitioner=KeyHashPartitioner(),
        )
        self._client_id = client_id or settings.client_id
        self._linger_ms = linger_ms
        self._rdkafka: RdKafkaProducer | None = None
        self._rdkafka_lock = threading.Lock()

    def publish(self, topic: str, event: CloudEvent, key: str | None = None) -> Any:
        """Queue one event; returns kafka-python's future (``.get(timeout)`` waits for the ack)."""
        future = self._producer.send(
            topic, value=event.to_json_bytes(), key=(key or event.subject or event.id).encode()
        )
        EVENTS_PUBLISHED.labels(topic).inc()
        return future

    def publish_raw(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        return self._producer.send(topic, value=value, key=key, headers=headers or [])

    def publish_and_wait(
        self, items: Sequence[tuple[str, CloudEvent, str | None]], timeout_s: float = 10.0
    ) -> None:
        """Publish ``(topic, event, key)`` items and return once the broker acknowledged every one."""
        futures = [self.publish(topic, event, key) for topic, event, key in items]
        self._producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)

    def publish_all(self, records: Sequence[tuple[str, bytes, bytes]], timeout_s: float = 10.0) -> None:
        """Publish serialised ``(topic, value, key)`` records in order and return once the broker
        acknowledged every one; raises :class:`PublishFailed` otherwise.

        Through librdkafka, a second producer of this publisher opened on first use: a consumer that
        republishes every event it applies (the profile's resolved interactions) spent more of its CPU
        per event in kafka-python's ``send()`` (partitioner, record builder, a future per record, all in
        Python) than in anything else but its database writes. Keys land on the partitions the
        fleet's kafka-python producers choose (murmur2, as :class:`KeyHashPartitioner`).
        """
        if not records:
            return
        producer = self._rdkafka_producer()
        failures: list[str] = []

        def delivered(error: RdKafkaError | None, _message: RdKafkaMessage) -> None:
            if error is not None:
                failures.append(str(error))

        produce = producer.produce
        for topic, value, key in records:
            while True:
                try:
                    produce(topic, value, key, on_delivery=delivered)
                    break
                except BufferError:  # librdkafka's local queue is full: let it drain, then retry
                    producer.poll(0.05)
        unacknowledged = producer.flush(timeout_s)
        for topic, count in Counter(record[0] for record in records).items():
            EVENTS_PUBLISHED.labels(topic).inc(count)
        if failures:
            raise PublishFailed(f"{len(failures)} of {len(records)} records failed: {failures[0]}")
        if unacknowledged:
            raise PublishFailed(f"{unacknowledged} records not acknowledged within {timeout_s} s")

    def _rdkafka_producer(self) -> RdKafkaProducer:
        with self._rdkafka_lock:
            if self._rdkafka is None:
                self._rdkafka = RdKafkaProducer(
                    {
                        "bootstrap.servers": ",".join(self.settings.servers()),
                        "client.id": f"{self._client_id}-rd",
                        "acks": "all",
                        # As the kafka-python producer above: one request in flight keeps per-key order
                        # through retries, and murmur2 is kafka-python's (and Java's) partitioner.
                        "max.in.flight.requests.per.connection": 1,
                        "enable.idempotence": False,
                        "partitioner": "murmur2_random",
                        "linger.ms": self._linger_ms,
                        "batch.size": 256 * 1024,
                        "compression.type": "none",
                        "logger": logging.getLogger("shared.kafka.librdkafka"),
                    }
                )
            return self._rdkafka

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def is_connected(self, timeout_s: float = 1.0) -> bool:
        """True when a bootstrap server accepts a connection. (kafka-python's own bootstrap_connected()
        turns false once it retires the bootstrap connection, which would fail readiness forever.)"""
        for server in self.settings.servers():
            host, _, port = server.rpartition(":")
            try:
                with socket.create_connection(
                    (host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s
                ):
                    return True
            except (OSError, ValueError):
                continue
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        if self._rdkafka is not None:
            self._rdkafka.flush(timeout_s)
            self._rdkafka = None
        self._producer.close(timeout=timeout_s)


class InboundEvent:
    """A consumed event: its validated payload, its envelope, and where it came from."""

    __slots__ = ("_envelope", "_typed", "offset", "partition", "payload", "raw", "topic")

    def __init__(
        self,
        typed: CloudEvent,
        payload: BaseModel,
        topic: str,
        partition: int,
        offset: int,
        raw: bytes | None = None,
    ) -> None:
        self._typed = typed
        self._envelope: CloudEvent | None = None
        self.payload = payload
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.raw = raw
        """The record's value exactly as consumed (None when the event was built in process)."""

    @property
    def envelope(self) -> CloudEvent:
        """The CloudEvent with ``data`` as a plain dict (built on first use; most handlers need only
        ``payload`` and the attributes below)."""
        if self._envelope is None:
            fields = {name: getattr(self._typed, name) for name in CloudEvent.model_fields if name != "data"}
            extra = self._typed.model_extra or {}
            self._envelope = CloudEvent.model_construct(
                **fields, **extra, data=self.payload.model_dump(mode="json", exclude_none=True)
            )
        return self._envelope

    @property
    def typed_envelope(self) -> CloudEvent:
        """The envelope exactly as validated: a CloudEvent whose ``data`` is the payload model. The
        cheapest way to republish an event unchanged (``model_copy(update={"subject": ...})``)."""
        return self._typed

    @property
    def id(self) -> str:
        return self._typed.id

    @property
    def type(self) -> str:
        return self._typed.type

    @property
    def subject(self) -> str | None:
        return self._typed.subject

    @property
    def time(self) -> datetime:
        return self._typed.time

    def __repr__(self) -> str:
        return f"InboundEvent(id={self.id!r}, type={self.type!r}, topic={self.topic!r}, offset={self.offset})"


EventHandler = Callable[[Sequence[InboundEvent], Session], None]
"""Applies a batch of new (never applied) events inside the given transaction. Must not commit."""


class _Poison(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_event_id = attrgetter("_typed.id")
_topic_and_type = attrgetter("topic", "_typed.type")


@lru_cache(maxsize=1)
def _typed_events() -> TypeAdapter[Any]:
    """One adapter that validates envelope and payload in a single pass, choosing the payload by ``type``."""
    envelopes = [
        create_model(
            f"{entry.payload.__name__}Event",
            __base__=CloudEvent,
            type=(Literal[event_type], ...),  # type: ignore[arg-type]
            data=(entry.payload, ...),
        )
        for event_type, entry in EVENT_TYPES.items()
    ]
    return TypeAdapter(
        Annotated[Union[tuple(envelopes)], Field(discriminator="type")],  # type: ignore[arg-type]  # noqa: UP007
        # Only keys go through pydantic-core's string cache: ids and timestamps are new in every event,
        # and caching them too cost about 1 µs per event (of ~5) in the consumer's process() step.
        config=ConfigDict(cache_strings="keys"),
    )


# The CloudEvents Kafka protocol binding (v1.0.2): in binary content mode the attributes travel as
# ``ce_<attribute>`` headers, ``datacontenttype`` as the ``content-type`` header and the value is the data
# alone; in structured mode the value is the whole event (``content-type: application/cloudevents+json``,
# or no header at all, which is how the fleet and most producers send).
CE_HEADER_PREFIX = "ce_"
CONTENT_TYPE_HEADER = "content-type"
STRUCTURED_CONTENT_TYPE = "application/cloudevents"


def binary_mode_document(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> bytes | None:
    """The structured JSON document of a binary-mode record, or None when the record is in structured mode.

    Binary mode is chosen as the binding says: a ``ce_specversion`` header and a ``content-type`` that is
    not ``application/cloudevents...``. Raises :class:`_Poison` when the headers or the data cannot make
    an event (payloads are JSON objects, so data of a non-JSON content type cannot be one)."""
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for name, raw in headers:
        key = name.lower()
        if key == CONTENT_TYPE_HEADER:
            content_type = _header_text(name, raw)
        elif key.startswith(CE_HEADER_PREFIX) and len(key) > len(CE_HEADER_PREFIX):
            attributes[key[len(CE_HEADER_PREFIX) :]] = _header_text(name, raw)
    if "specversion" not in attributes:
        return None
    if content_type is not None and content_type.lower().startswith(STRUCTURED_CONTENT_TYPE):
        return None
    document: dict[str, Any] = dict(attributes)
    if content_type is not None:
        document["datacontenttype"] = content_type
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise _Poison(
                DeadLetterReason.INVALID_PAYLOAD,
                f"binary-mode data is {media!r}; event payloads are JSON (content-type application/json)",
            )
    if value is None:
        raise _Poison(DeadLetterReason.INVALID_PAYLOAD, "binary-mode record has no data")
    try:
        # Parsed apart from the attributes, so nothing in the data can stand for an attribute.
        document["data"] = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Poison(DeadLetterReason.INVALID_JSON, f"binary-mode data is not JSON: {exc}") from exc
    return json.dumps(document).encode()


def _header_text(name: str, raw: bytes | None) -> str:
    try:
        return (raw or b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Poison(DeadLetterReason.INVALID_ENVELOPE, f"header {name} is not UTF-8") from exc


def parse_record(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()
) -> tuple[CloudEvent, BaseModel]:
    """Parse a record (structured or binary content mode) into its envelope and payload, or raise
    :class:`_Poison`."""
    if headers:
        value = binary_mode_document(value, headers) or value
    if value is None:
        raise _Poison(DeadLetterReason.INVALID_JSON, "record has no value")
    try:
        # pydantic-core parses the JSON and validates envelope + payload in one pass.
        typed = _typed_events().validator.validate_json(value)
    except ValidationError as exc:
        raise _classify(exc) from exc
    return typed, typed.data


def _classify(exc: ValidationError) -> _Poison:
    errors = exc.errors()
    kinds = {err["type"] for err in errors}
    if "json_invalid" in kinds:
        return _Poison(DeadLetterReason.INVALID_JSON, f"not JSON: {_short(exc)}")
    if "union_tag_invalid" in kinds:
        return _Poison(DeadLetterReason.UNKNOWN_TYPE, f"unknown event type: {_short(exc)}")
    if all(len(err["loc"]) >= 3 and err["loc"][1] == "data" for err in errors):
        return _Poison(
            DeadLetterReason.INVALID_PAYLOAD, f"{errors[0]['loc'][0]} payload invalid: {_short(exc)}"
        )
    return _Poison(DeadLetterReason.INVALID_ENVELOPE, f"not a CloudEvent: {_short(exc)}")


def _short(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
    )


class EventConsumer:
    """A consumer-group member that applies events through ``handler`` with the guarantees above."""

    def __init__(
        self,
        *,
        settings: KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        handler: EventHandler,
        ledger: EventLedger,
        event_types: Iterable[str] | None = None,
        client_id: str | None = None,
        dead_letters: EventPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.topics = list(topics)
        self.handler = handler
        self.ledger = ledger
        self.event_types = frozenset(event_types) if event_types is not None else None
        self.client_id = client_id or f"{settings.client_id}-{group_id}"
        self._dead_letters = dead_letters
        self._owns_dead_letters = dead_letters is None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self.assigned = threading.Event()
        self._dead_lettered = 0
        self.error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> EventConsumer:
        """Run the loop in a daemon thread (what services do inside their lifespan)."""
        self._thread = threading.Thread(target=self.run, name=f"consumer-{self.group_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the batch in hand, commit, close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.servers(),
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            max_poll_records=self.settings.max_poll_records,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
        )
        self._consumer = consumer
        if self._dead_letters is None:
            self._dead_letters = EventPublisher(self.settings, client_id=f"{self.client_id}-dlq")
        consumer.subscribe(self.topics)
        log.info("consumer_started", group=self.group_id, topics=self.topics)
        next_prune = time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_prune:
                    self.prune_ledger()
                    next_prune = time.monotonic() + self.settings.ledger_prune_interval_s
                records = consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
                if consumer.assignment():
                    self.assigned.set()
                if records:
                    self.process(records)
                    self._report_lag(consumer)
        except BaseException as exc:
            self.error = exc
            log.exception("consumer_crashed", group=self.group_id)
            raise
        finally:
            consumer.close(autocommit=False)
            if self._owns_dead_letters and self._dead_letters is not None:
                self._dead_letters.close()
            log.info("consumer_stopped", group=self.group_id)

    def prune_ledger(self, now: datetime | None = None) -> int:
        """Forget applied ids older than ``ledger_retention_hours`` (at start, then every
        ``ledger_prune_interval_s``), so the ledger and its cost per event stay bounded. A failure is
        logged and retried at the next interval: it never stops the consumer."""
        hours = self.settings.ledger_retention_hours
        if hours <= 0:
            return 0
        started = time.perf_counter()
        cutoff = (now or datetime.now(UTC)) - timedelta(hours=hours)
        try:
            forgotten = self.ledger.forget_before(cutoff)
        except Exception:
            log.warning("ledger_prune_failed", group=self.group_id, exc_info=True)
            return 0
        if forgotten:
            log.info(
                "ledger_pruned",
                group=self.group_id,
                forgotten=forgotten,
                before=cutoff.isoformat(),
                seconds=round(time.perf_counter() - started, 3),
            )
        return forgotten

    # -- one poll's worth ---------------------------------------------------------------------

    def process(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Apply one poll's records and commit their offsets; public so tests can drive a crash."""
        batch: list[InboundEvent] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        dead_lettered = self._dead_lettered
        wanted = self.event_types
        validate = _typed_events().validator.validate_json
        # The hot path of every consumer: one pydantic-core pass per record, nothing else per record.
        for tp, messages in records.items():
            if not messages:
                continue
            offsets[tp] = OffsetAndMetadata(messages[-1].offset + 1, "", -1)
            topic, partition = tp.topic, tp.partition
            for message in messages:
                value = message.value
                raw = value
                try:
                    if message.headers:  # rare: most producers send structured mode without headers
                        binary = binary_mode_document(value, message.headers)
                        if binary is not None:
                            # The record's value is only the data: handlers that reuse the raw bytes
                            # (republishing) must rebuild the event instead.
                            value, raw = binary, None
                    if value is None:
                        raise _Poison(DeadLetterReason.INVALID_JSON, "record has no value")
                    typed = validate(value)
                except ValidationError as exc:
                    poison = _classify(exc)
                    self._dead_letter(message, poison.reason, poison.detail)
                    continue
                except _Poison as poison:
                    self._dead_letter(message, poison.reason, poison.detail)
                    continue
                if wanted is not None and typed.type not in wanted:
                    continue  # a known type this group does not act on
                batch.append(InboundEvent(typed, typed.data, topic, partition, message.offset, raw))
        if batch:
            self._apply(batch)
        if self._dead_lettered != dead_lettered and self._dead_letters is not None:
            self._dead_letters.flush()  # dead letters are durable before the offsets move past them
        self.commit(offsets)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        assert self._consumer is not None
        self._consumer.commit(offsets)

    def _apply(self, batch: list[InboundEvent]) -> None:
        topic = batch[0].topic
        attempts = self.settings.handler_retries + 1
        error = ""
        for attempt in range(attempts):
            try:
                self._apply_once(batch)
                return
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:1000]
                EVENTS_FAILED.labels(self.group_id, topic).inc()
                log.warning(
                    "handler_failed",
                    group=self.group_id,
                    events=len(batch),
                    attempt=attempt + 1,
                    exc_info=True,
                )
                time.sleep(self.settings.retry_backoff_ms / 1000 * (2**attempt))
        if len(batch) == 1:
            event = batch[0]
            self._dead_letter_event(event, DeadLetterReason.HANDLER_ERROR, error)
            return
        # Isolate the poison event: apply one at a time, dead-letter the ones that still fail.
        for event in batch:
            self._apply([event])

    def _apply_once(self, batch: list[InboundEvent]) -> None:
        started = time.perf_counter()
        with self.ledger.session_factory() as session, session.begin():
            # Claiming the ids and applying the events commit together, or not at all.
            new_ids = self.ledger.claim(session, list(map(_event_id, batch)))
            if len(new_ids) == len(batch):
                fresh = batch  # the usual case: nothing seen before, no id twice in the batch
            else:
                fresh = []
                for event in batch:
                    if event.id in new_ids:
                        fresh.append(event)
                        new_ids.discard(event.id)  # the same id twice in one batch counts once
            if fresh:
                self.handler(fresh, session)
        HANDLER_SECONDS.labels(self.group_id, batch[0].topic).observe(time.perf_counter() - started)
        # (attrgetter keeps these per-event passes in C: they run for every event the fleet consumes.)
        for (topic, event_type), count in Counter(map(_topic_and_type, fresh)).items():
            EVENTS_CONSUMED.labels(self.group_id, topic, event_type).inc(count)
        duplicates = len(batch) - len(fresh)
        if duplicates:
            EVENTS_DUPLICATE.labels(self.group_id, batch[0].topic).inc(duplicates)

    def _dead_letter_event(self, event: InboundEvent, reason: str, detail: str) -> None:
        assert self._dead_letters is not None
        self._send_dead_letter(
            event.topic,
            event.partition,
            event.offset,
            event.envelope.to_json_bytes(),
            (event.subject or "").encode(),
            reason,
            detail,
        )

    def _dead_letter(self, message: Any, reason: str, detail: str) -> None:
        self._send_dead_letter(
            message.topic,
            message.partition,
            message.offset,
            message.value,
            message.key,
            reason,
            detail,
            # A binary-mode event's attributes are its headers: the dead letter keeps them.
            original_headers=message.headers,
        )

    def _send_dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
        key: bytes | None,
        reason: str,
        detail: str,
        original_headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> None:
        assert self._dead_letters is not None
        headers = [
            (DLQ_REASON, reason.encode()),
            (DLQ_DETAIL, detail[:2000].encode()),
            (DLQ_TOPIC, topic.encode()),
            (DLQ_PARTITION, str(partition).encode()),
            (DLQ_OFFSET, str(offset).encode()),
            (DLQ_GROUP, self.group_id.encode()),
            *((name, raw or b"") for name, raw in original_headers or () if not name.startswith("crm-")),
        ]
        self._dead_letters.publish_raw(dead_letter_topic(topic), value or b"", key or None, headers)
        self._dead_lettered += 1
        EVENTS_DEAD_LETTERED.labels(self.group_id, topic, reason).inc()
        log.warning(
            "event_dead_lettered",
            group=self.group_id,
            topic=topic,
            partition=partition,
            offset=offset,
            reason=reason,
            detail=detail[:300],
        )

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(
                max(0, highwater - consumer.position(tp))
            )

    def lag(self) -> int | None:
        """Total messages behind across assigned partitions (None before the first fetch)."""
        consumer = self._consumer
        if consumer is None:
            return None
        total = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                return None
            total += max(0, highwater - consumer.position(tp))
        return total
