"""The gateway's librdkafka producer and the fleet's kafka-python publisher agree on partitions, so one
customer's events stay in order whichever of them published each one."""

from __future__ import annotations

import asyncio

from kafka import KafkaConsumer

from services.gateway.producer import IngestProducer
from shared.kafka import EventPublisher, ensure_topics
from shared.settings import KafkaSettings


def test_a_key_lands_on_the_same_partition_from_either_producer(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"test.partitioning.{unique}"
    settings = kafka_settings.model_copy(update={"partitions": 6})
    ensure_topics(settings, [topic])
    keys = [f"customer-{i}".encode() for i in range(40)]

    publisher = EventPublisher(settings)
    try:
        for key in keys:
            publisher.publish_raw(topic, b"fleet", key).get(timeout=10)
    finally:
        publisher.close()

    async def publish_through_gateway() -> None:
        producer = IngestProducer(settings, client_id=f"test-{unique}", message_timeout_s=10)
        try:
            loop = asyncio.get_running_loop()
            await producer.produce_batch([(topic, b"gateway", key) for key in keys], loop, timeout_s=10)
        finally:
            producer.close()

    asyncio.run(publish_through_gateway())

    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.servers(), auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    partitions: dict[bytes, dict[bytes, int]] = {b"fleet": {}, b"gateway": {}}
    try:
        for record in consumer:
            partitions[record.value][record.key] = record.partition
    finally:
        consumer.close()

    assert len(partitions[b"fleet"]) == len(keys)
    assert len(set(partitions[b"fleet"].values())) > 1  # keys spread, so agreement is no coincidence
    assert partitions[b"gateway"] == partitions[b"fleet"]
