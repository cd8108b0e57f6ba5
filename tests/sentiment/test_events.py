"""Through the real embedded broker: reviews in, exactly one sentiment-scored event out, erasure honoured."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from services.sentiment.app import create_app
from services.sentiment.settings import SentimentSettings
from shared.contracts import CloudEvent, EventTypeName, Topic, stable_event_id
from shared.contracts.events import CustomerErased, CustomerRef, Review
from shared.kafka import EventPublisher
from shared.settings import KafkaSettings
from tests.sentiment.test_api import NEGATIVE, wait_ready


def scored_events_for(
    kafka: KafkaSettings, source_event_id: str, settle_s: float, timeout_s: float = 60
) -> list[dict]:
    """Every sentiment-scored event about ``source_event_id``, reading until none came for ``settle_s``."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.servers(), enable_auto_commit=False, consumer_timeout_ms=500
    )
    partitions = consumer.partitions_for_topic(Topic.SENTIMENT_SCORED) or set()
    consumer.assign([TopicPartition(Topic.SENTIMENT_SCORED, p) for p in partitions])
    consumer.seek_to_beginning()
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    last_seen = None
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                event = json.loads(message.value)
                if event["data"]["source_event_id"] == source_event_id:
                    found.append(event)
                    last_seen = time.monotonic()
            if last_seen is not None and time.monotonic() - last_seen > settle_s:
                break
    finally:
        consumer.close()
    return found


def test_a_review_delivered_twice_yields_exactly_one_scored_event_and_erasure_removes_it(
    sentiment_models_dir: Path, database_url: str, kafka_settings: KafkaSettings, unique: str
) -> None:
    settings = SentimentSettings(
        data_dir=str(sentiment_models_dir),
        # Not the default (auto), which may compile the network at every start (about 25 s on one
        # core); test_units covers what auto picks.
        cpu_backend="int8",
        database_url=database_url,
        kafka=kafka_settings,
        consumer_group=f"crm-sentiment-{unique}",
        customers_group=f"crm-sentiment-customers-{unique}",
    )
    customer = f"cust-{unique}"
    review = CloudEvent.new(
        EventTypeName.REVIEW,
        Review(customer=CustomerRef(email=f"{unique}@example.com"), item_id="sku-1", text=NEGATIVE, stars=1),
        source="/tests/shop",
        subject=customer,
        id=f"review-{uuid.uuid4()}",
    )
    publisher = EventPublisher(kafka_settings)
    try:
        with TestClient(create_app(settings)) as client:
            wait_ready(client)
            publisher.publish_and_wait([(Topic.INTERACTIONS_RESOLVED, review, customer)] * 2)

            found = scored_events_for(kafka_settings, review.id, settle_s=3)

            assert len(found) == 1
            scored = found[0]
            assert scored["type"] == EventTypeName.SENTIMENT_SCORED
            assert scored["subject"] == customer
            assert scored["data"]["customer_id"] == customer
            assert scored["data"]["source_type"] == "review"
            assert scored["data"]["label"] == "negative"
            assert scored["id"] == stable_event_id("sentiment", review.id, scored["data"]["model_version"])
            assert client.get(f"/customers/{customer}/sentiment").json()["count"] == 1

            erased = CloudEvent.new(
                EventTypeName.CUSTOMER_ERASED,
                CustomerErased(customer_id=customer, erasure_id=f"er-{unique}"),
                source="/tests/profile",
                subject=customer,
            )
            publisher.publish_and_wait([(Topic.CUSTOMER_ERASED, erased, customer)])
            deadline = time.monotonic() + 30
            while (
                client.get(f"/customers/{customer}/sentiment").json()["count"] and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            assert client.get(f"/customers/{customer}/sentiment").json() == {
                "customer_id": customer,
                "count": 0,
                "mean_score": None,
                "items": [],
            }
    finally:
        publisher.close()
