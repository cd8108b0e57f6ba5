"""CloudEvents' Kafka binding in binary content mode (``ce_*`` headers, the data as the value), sent by a
stock client with no project code, is applied like a structured-mode event; bad ones are dead-lettered."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition

from shared.contracts import Topic, dead_letter_topic
from shared.contracts.events import Purchase
from shared.db import EventLedger, make_engine
from shared.kafka import (
    DLQ_REASON,
    DeadLetterReason,
    EventConsumer,
    InboundEvent,
    _Poison,
    ensure_topics,
    parse_record,
)
from shared.settings import KafkaSettings
from tests.shared.bus_support import wait_for

PURCHASE = {
    "customer": {"customer_id": "shop-customer-7", "email": "ada@example.com"},
    "channel": "web",
    "order_id": "order-7",
    "items": [{"item_id": "sku-1", "quantity": 2, "price": 19.5}],
    "amount": 39.0,
    "currency": "EUR",
}


def binary_headers(event_id: str, **overrides: str) -> list[tuple[str, bytes]]:
    attributes = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": "/my-shop/checkout",
        "ce_type": "crm.purchase.v1",
        "ce_time": "2026-11-23T10:15:00Z",
        "content-type": "application/json",
        **overrides,
    }
    return [(name, value.encode()) for name, value in attributes.items()]


def test_binary_mode_headers_make_the_envelope() -> None:
    headers = binary_headers("e-1", ce_subject="cus_1", ce_traceparent="00-abc-def-01")
    envelope, payload = parse_record(json.dumps(PURCHASE).encode(), headers)
    assert isinstance(payload, Purchase)
    assert payload.amount == 39.0
    assert (envelope.id, envelope.type, envelope.source, envelope.subject) == (
        "e-1",
        "crm.purchase.v1",
        "/my-shop/checkout",
        "cus_1",
    )
    assert envelope.time.isoformat() == "2026-11-23T10:15:00+00:00"
    assert envelope.datacontenttype == "application/json"
    assert (envelope.model_extra or {})["traceparent"] == "00-abc-def-01"  # an extension attribute


def test_structured_mode_still_wins_when_the_content_type_says_so() -> None:
    document = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/s",
        "type": "crm.purchase.v1",
        "data": PURCHASE,
    }
    # ce_ headers next to a structured value (some bridges copy them): the value is the event.
    headers = [("content-type", b"application/cloudevents+json"), ("ce_specversion", b"1.0")]
    envelope, _ = parse_record(json.dumps(document).encode(), headers)
    assert envelope.id == "s-1"
    # Headers that are not CloudEvents attributes leave a structured record alone.
    envelope, _ = parse_record(json.dumps(document).encode(), [("traceparent", b"00-1-2-01")])
    assert envelope.id == "s-1"


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"not json", binary_headers("x"), DeadLetterReason.INVALID_JSON),
        (
            b"plain words",
            binary_headers("x", **{"content-type": "text/plain"}),
            DeadLetterReason.INVALID_PAYLOAD,
        ),
        (
            json.dumps(PURCHASE).encode(),
            binary_headers("x", ce_type="crm.nope.v1"),
            DeadLetterReason.UNKNOWN_TYPE,
        ),
        (b'{"amount": -1}', binary_headers("x"), DeadLetterReason.INVALID_PAYLOAD),
        (json.dumps(PURCHASE).encode(), binary_headers("x", ce_source=""), DeadLetterReason.INVALID_ENVELOPE),
    ],
)
def test_bad_binary_records_are_classified(
    value: bytes, headers: list[tuple[str, bytes]], reason: str
) -> None:
    with pytest.raises(_Poison) as caught:
        parse_record(value, headers)
    assert caught.value.reason == reason


def test_a_stock_client_publishes_binary_mode_and_the_bus_applies_it(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    topic = f"{Topic.INTERACTIONS}.{unique}"
    ensure_topics(kafka_settings, [topic])
    good_id, bad_id = str(uuid.uuid4()), str(uuid.uuid4())

    # The producing side: confluent-kafka alone, as another company's system would publish.
    producer = Producer({"bootstrap.servers": kafka_settings.bootstrap, "acks": "all"})
    producer.produce(
        topic, key=b"shop-customer-7", value=json.dumps(PURCHASE).encode(), headers=binary_headers(good_id)
    )
    producer.produce(
        topic,
        key=b"shop-customer-7",
        value=b"39 EUR",
        headers=binary_headers(bad_id, **{"content-type": "text/plain"}),
    )
    # The same event again: its id is the idempotency key in binary mode too.
    producer.produce(
        topic, key=b"shop-customer-7", value=json.dumps(PURCHASE).encode(), headers=binary_headers(good_id)
    )
    assert producer.flush(30) == 0

    received: list[InboundEvent] = []
    engine = make_engine(f"sqlite:///{tmp_path}/ledger.db")
    consumer = EventConsumer(
        settings=kafka_settings,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=lambda events, _session: received.extend(events),
        ledger=EventLedger(engine, f"g-{unique}"),
    ).start()
    try:
        assert wait_for(lambda: bool(received), timeout_s=30), f"error={consumer.error!r}"
        dead = read_all(kafka_settings, dead_letter_topic(topic), expect=1)
    finally:
        consumer.stop()
    assert [e.id for e in received] == [good_id]
    event = received[0]
    assert isinstance(event.payload, Purchase)
    assert event.payload.customer.customer_id == "shop-customer-7"
    assert event.type == "crm.purchase.v1"
    assert event.raw is None  # the value was only the data: republishers rebuild the event
    assert event.envelope.to_json_bytes()  # and can
    [letter] = dead
    headers = dict(letter.headers)
    assert headers[DLQ_REASON] == DeadLetterReason.INVALID_PAYLOAD.encode()
    assert headers["ce_id"] == bad_id.encode()  # the dead letter keeps the event's attributes
    assert letter.value == b"39 EUR"


def read_all(settings: KafkaSettings, topic: str, expect: int) -> list:  # type: ignore[type-arg]
    consumer = KafkaConsumer(bootstrap_servers=settings.servers(), enable_auto_commit=False)
    try:
        found: list = []  # type: ignore[type-arg]

        def poll() -> bool:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            if partitions and not consumer.assignment():
                consumer.assign(partitions)
                consumer.seek_to_beginning(*partitions)
            for records in consumer.poll(timeout_ms=200).values():
                found.extend(records)
            return len(found) >= expect

        assert wait_for(poll, timeout_s=30)
        return found
    finally:
        consumer.close()
