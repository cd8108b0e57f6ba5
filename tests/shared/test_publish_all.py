"""EventPublisher.publish_all: librdkafka publishing of serialised records, acknowledged before it returns."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer

from shared.kafka import EventPublisher, ensure_topics
from shared.settings import KafkaSettings


def _read_all(settings: KafkaSettings, topic: str, expected: int) -> list[tuple[int, bytes, bytes]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.servers(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    try:
        found = []
        for message in consumer:
            found.append((message.partition, message.key, message.value))
            if len(found) == expected:
                break
        return found
    finally:
        consumer.close()


def test_publish_all_returns_with_every_record_on_the_partition_kafka_python_picks(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"test.publish-all.{unique}"
    settings = kafka_settings.model_copy(update={"partitions": 5})
    ensure_topics(settings, [topic, f"{topic}.x"])
    keys = [f"customer-{i}".encode() for i in range(40)]
    records = [(topic, f'{{"n": {n}}}'.encode(), keys[n % 40]) for n in range(200)]
    publisher = EventPublisher(settings)
    plain = KafkaProducer(bootstrap_servers=settings.servers())
    try:
        publisher.publish_all(records, timeout_s=10)
        theirs = {key: plain.send(f"{topic}.x", b"{}", key=key).get(timeout=10).partition for key in keys}
    finally:
        publisher.close()
        plain.close()
    consumed = _read_all(settings, topic, len(records))
    assert len(consumed) == len(records)
    assert {key: partition for partition, key, _ in consumed} == theirs
    assert len(set(theirs.values())) == 5
    # One key's records arrive in the order they were given.
    assert [value for _, key, value in consumed if key == keys[3]] == [
        value for _, value, key in records if key == keys[3]
    ]
