"""The bus against the real embedded broker: round trip, group split, dead letters, crash recovery."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import select

from shared.contracts import CloudEvent, EventTypeName, dead_letter_topic
from shared.contracts.events import CustomerRef, ProductView
from shared.db import EventLedger, make_engine
from shared.kafka import (
    DLQ_DETAIL,
    DLQ_OFFSET,
    DLQ_REASON,
    DLQ_TOPIC,
    EventConsumer,
    EventPublisher,
    ensure_topics,
)
from shared.settings import KafkaSettings
from tests.shared.bus_support import applied, applied_count, metadata, recording_handler, wait_for


def view(customer: str, seq: int) -> CloudEvent:
    return CloudEvent.new(
        EventTypeName.PRODUCT_VIEW,
        ProductView(customer=CustomerRef(customer_id=customer), item_id=f"item-{seq}"),
        source="/tests",
    )


def publish_views(settings: KafkaSettings, topic: str, customers: int, per_customer: int) -> list[CloudEvent]:
    publisher = EventPublisher(settings)
    events = [view(f"c{c}", s) for s in range(per_customer) for c in range(customers)]
    publisher.publish_and_wait([(topic, e, e.data["customer"]["customer_id"]) for e in events])
    publisher.close()
    return events


def consumer_for(settings: KafkaSettings, engine, topic: str, group: str, name: str) -> EventConsumer:  # type: ignore[no-untyped-def]
    return EventConsumer(
        settings=settings,
        group_id=group,
        topics=[topic],
        handler=recording_handler(name),
        ledger=EventLedger(engine, group),
    )


def test_round_trip_keeps_each_customers_order(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    topic = f"test.roundtrip.{unique}"
    ensure_topics(kafka_settings, [topic])
    engine = make_engine(f"sqlite:///{tmp_path}/effects.db")
    metadata.create_all(engine)
    events = publish_views(kafka_settings, topic, customers=5, per_customer=20)

    consumer = consumer_for(kafka_settings, engine, topic, f"g-{unique}", "only").start()
    try:
        assert wait_for(lambda: applied_count(engine) == len(events))
    finally:
        consumer.stop()

    with engine.connect() as connection:
        rows = connection.execute(
            select(applied.c.customer, applied.c.seq, applied.c.event_id).order_by(applied.c.row)
        ).all()
    assert {r.event_id for r in rows} == {e.id for e in events}
    for customer in {r.customer for r in rows}:
        seqs = [r.seq for r in rows if r.customer == customer]
        assert seqs == sorted(seqs), f"{customer}'s events were applied out of order: {seqs}"


def test_two_consumers_split_partitions_and_apply_each_event_once(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    topic = f"test.split.{unique}"
    ensure_topics(kafka_settings, [topic])  # kafka_settings.partitions == 2
    engine = make_engine(f"sqlite:///{tmp_path}/effects.db")
    metadata.create_all(engine)
    group = f"g-{unique}"
    first = consumer_for(kafka_settings, engine, topic, group, "first").start()
    second = consumer_for(kafka_settings, engine, topic, group, "second").start()
    try:
        assert wait_for(lambda: first.assigned.is_set() and second.assigned.is_set(), timeout_s=40)
        events = publish_views(kafka_settings, topic, customers=40, per_customer=10)
        assert wait_for(lambda: applied_count(engine) >= len(events), timeout_s=40)
    finally:
        first.stop()
        second.stop()

    with engine.connect() as connection:
        rows = connection.execute(select(applied.c.event_id, applied.c.consumer)).all()
    per_event = Counter(r.event_id for r in rows)
    assert set(per_event) == {e.id for e in events}
    assert max(per_event.values()) == 1, "an event was applied twice"
    by_consumer = Counter(r.consumer for r in rows)
    assert by_consumer["first"] > 0
    assert by_consumer["second"] > 0


def test_poison_messages_are_dead_lettered_and_consumption_continues(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    topic = f"test.poison.{unique}"
    ensure_topics(kafka_settings, [topic])
    engine = make_engine(f"sqlite:///{tmp_path}/effects.db")
    metadata.create_all(engine)

    def handler(events, session):  # type: ignore[no-untyped-def]
        for event in events:
            if event.payload.item_id == "item-666":
                raise RuntimeError("cannot apply item-666")
        recording_handler("only")(events, session)

    publisher = EventPublisher(kafka_settings)
    good_before, explodes, good_after = view("c1", 1), view("c1", 666), view("c1", 2)
    unknown = CloudEvent.new("crm.teleport.v1", {"where": "mars"}, source="/tests")
    bad_payload = CloudEvent.new(
        EventTypeName.PRODUCT_VIEW, {"customer": {}, "item_id": "x"}, source="/tests"
    )
    key = b"c1"
    publisher.publish(topic, good_before, "c1")
    publisher.publish_raw(topic, b"{not json", key)
    publisher.publish_raw(topic, b'{"specversion": "1.0", "id": "x"}', key)
    publisher.publish(topic, unknown, "c1")
    publisher.publish(topic, bad_payload, "c1")
    publisher.publish(topic, explodes, "c1")
    publisher.publish(topic, good_after, "c1")
    publisher.flush()
    publisher.close()

    consumer = EventConsumer(
        settings=kafka_settings,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=handler,
        ledger=EventLedger(engine, f"g-{unique}"),
    ).start()
    try:
        assert wait_for(lambda: applied_count(engine) == 2)
        dead = read_all(kafka_settings, dead_letter_topic(topic), expected=5)
    finally:
        consumer.stop()

    with engine.connect() as connection:
        applied_ids = {r.event_id for r in connection.execute(select(applied.c.event_id))}
    assert applied_ids == {good_before.id, good_after.id}
    reasons = [h[DLQ_REASON] for h in dead]
    assert reasons == ["invalid_json", "invalid_envelope", "unknown_type", "invalid_payload", "handler_error"]
    assert all(h[DLQ_TOPIC] == topic for h in dead)
    assert [int(h[DLQ_OFFSET]) for h in dead] == [1, 2, 3, 4, 5]
    assert "cannot apply item-666" in dead[-1][DLQ_DETAIL]
    assert "customer" in dead[3][DLQ_DETAIL]


def read_all(settings: KafkaSettings, topic: str, expected: int) -> list[dict[str, str]]:
    """Headers of every record on a topic (all partitions), by offset; waits for ``expected`` records."""
    reader = KafkaConsumer(
        bootstrap_servers=settings.servers(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or []]
    reader.assign(partitions)
    reader.seek_to_beginning()
    found: list[tuple[int, dict[str, str]]] = []
    wait_for(lambda: _drain(reader, found) >= expected, timeout_s=20)
    reader.close()
    return [headers for _, headers in sorted(found, key=lambda f: int(f[1][DLQ_OFFSET]))]


def _drain(reader: KafkaConsumer, found: list[tuple[int, dict[str, str]]]) -> int:
    for records in reader.poll(timeout_ms=200).values():
        for record in records:
            found.append((record.offset, {k: v.decode() for k, v in record.headers}))
    return len(found)


def test_consumer_killed_before_commit_applies_nothing_twice_after_restart(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    topic = f"test.crash.{unique}"
    ensure_topics(kafka_settings, [topic])
    db_url = f"sqlite:///{tmp_path}/effects.db"
    engine = make_engine(db_url)
    metadata.create_all(engine)
    group = f"g-{unique}"
    events = publish_views(kafka_settings, topic, customers=10, per_customer=10)

    crashed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.shared.crashing_consumer",
            kafka_settings.bootstrap,
            topic,
            group,
            db_url,
        ],
        timeout=90,
        capture_output=True,
        check=False,
    )
    assert crashed.returncode == 3, crashed.stderr.decode()[-2000:]
    applied_before_restart = applied_count(engine)
    assert applied_before_restart > 0, "the first consumer should have applied a batch before dying"

    restarted = consumer_for(kafka_settings, engine, topic, group, "restarted").start()
    try:
        assert wait_for(lambda: applied_count(engine) >= len(events), timeout_s=40)
        assert wait_for(lambda: restarted.lag() == 0, timeout_s=20)
    finally:
        restarted.stop()

    with engine.connect() as connection:
        rows = connection.execute(select(applied.c.event_id, applied.c.consumer)).all()
    per_event = Counter(r.event_id for r in rows)
    assert set(per_event) == {e.id for e in events}
    assert max(per_event.values()) == 1, "an event was applied twice after the crash"
    # The restarted consumer was handed the uncommitted events again and skipped them by id.
    assert Counter(r.consumer for r in rows)["first"] == applied_before_restart


def test_publisher_partitions_keys_as_kafka_pythons_default(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    """The remembering partitioner picks what kafka-python's (and Java's) murmur2 partitioner picks."""
    topic = f"test.keys.{unique}"
    settings = kafka_settings.model_copy(update={"partitions": 5})
    ensure_topics(settings, [topic])
    publisher = EventPublisher(settings)
    plain = KafkaProducer(bootstrap_servers=settings.servers())
    try:
        keys = [f"customer-{i}".encode() for i in range(60)] * 2  # the second round is remembered
        ours = [publisher.publish_raw(topic, b"{}", key).get(timeout=10).partition for key in keys]
        theirs = [plain.send(topic, b"{}", key=key).get(timeout=10).partition for key in keys]
    finally:
        publisher.close()
        plain.close()
    assert len(set(ours)) == 5
    assert ours == theirs


def test_a_running_consumer_forgets_ids_older_than_the_ledger_retention(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    topic = f"test.retention.{unique}"
    ensure_topics(kafka_settings, [topic])
    engine = make_engine(f"sqlite:///{tmp_path}/effects.db")
    metadata.create_all(engine)
    group = f"g-{unique}"
    ledger = EventLedger(engine, group)
    with ledger.session_factory() as session, session.begin():
        ledger.claim(session, [view("c1", s).id for s in range(30)])
    kept = consumer_for(
        kafka_settings.model_copy(update={"ledger_retention_hours": 0}), engine, topic, group, "k"
    )
    assert kept.prune_ledger(now=datetime.now(UTC) + timedelta(days=365)) == 0  # 0 keeps every id
    assert ledger.count() == 30

    # A retention of 36 ms: the consumer prunes when it starts, then every 0.2 s while it runs.
    settings = kafka_settings.model_copy(
        update={"ledger_retention_hours": 1e-5, "ledger_prune_interval_s": 0.2}
    )
    consumer = consumer_for(settings, engine, topic, group, "only").start()
    try:
        assert wait_for(lambda: ledger.count() == 0)
        events = publish_views(kafka_settings, topic, customers=2, per_customer=5)
        assert wait_for(lambda: applied_count(engine) == len(events))
        assert wait_for(lambda: ledger.count() == 0)  # the applied events' ids age out too
    finally:
        consumer.stop()
    assert applied_count(engine) == len(events)
