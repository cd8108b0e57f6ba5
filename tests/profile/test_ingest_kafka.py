"""Replaying real data (a slice of MovieLens 100k and CDNOW) through the embedded broker gives every
customer the counts and revenue computed directly from the source files; every interaction is
republished on the resolved topic with the canonical id as subject."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr

from services.profile.app import create_app
from services.profile.settings import ProfileSettings
from shared.contracts import Topic, dead_letter_topic
from shared.datasets import cdnow_transactions, movielens_ratings
from shared.kafka import EventPublisher
from shared.replay import cdnow_customer_id, cdnow_events, movielens_customer_id, movielens_events, replay
from shared.settings import KafkaSettings
from tests.profile.conftest import TEST_KEY

ML_USERS = [str(u) for u in range(1, 13)]
CDNOW_CUSTOMERS = [f"{c:05d}" for c in range(1, 60)]


def _expected() -> dict[str, dict[str, float]]:
    """Counts and revenue per customer, straight from the source files."""
    expected: dict[str, dict[str, float]] = defaultdict(lambda: {"ratings": 0, "orders": 0, "revenue": 0.0})
    for r in movielens_ratings():
        if r.user_id in ML_USERS:
            expected[movielens_customer_id(r.user_id)]["ratings"] += 1
            expected[movielens_customer_id(r.user_id)]["rating_sum"] = (
                expected[movielens_customer_id(r.user_id)].get("rating_sum", 0.0) + r.rating
            )
    for t in cdnow_transactions(sample=False):
        if t.customer_id in CDNOW_CUSTOMERS:
            expected[cdnow_customer_id(t.customer_id)]["orders"] += 1
            expected[cdnow_customer_id(t.customer_id)]["revenue"] += t.amount
    return expected


def _resolved_subjects(
    kafka_settings: KafkaSettings, ids: set[str], timeout_s: float = 30.0
) -> dict[str, str]:
    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.servers(), enable_auto_commit=False)
    partitions = [TopicPartition(Topic.INTERACTIONS_RESOLVED, p) for p in consumer.partitions_for_topic(
        Topic.INTERACTIONS_RESOLVED) or []]  # fmt: skip
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(found) < len(ids):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    body = json.loads(record.value)
                    if body["id"] in ids:
                        found[body["id"]] = body["subject"]
                        assert record.key.decode() == body["subject"]
    finally:
        consumer.close()
    return found


def _dead_letter_reasons(kafka_settings: KafkaSettings, event_id: str, timeout_s: float = 20.0) -> list[str]:
    topic = dead_letter_topic(Topic.INTERACTIONS)
    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.servers(), enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    reasons: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not reasons:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if json.loads(record.value).get("id") == event_id:
                        reasons.append(dict(record.headers)["crm-dlq-reason"].decode())
    finally:
        consumer.close()
    return reasons


@pytest.mark.slow
def test_replay_slice_matches_the_source_files(tmp_path: Path, kafka_settings: KafkaSettings) -> None:
    settings = ProfileSettings(
        data_dir=str(tmp_path), kafka=kafka_settings, pii_key=SecretStr(TEST_KEY), environment="test"
    )
    events = [*movielens_events(users=ML_USERS), *cdnow_events(customers=CDNOW_CUSTOMERS)]
    expected = _expected()
    with TestClient(create_app(settings)) as client:
        publisher = EventPublisher(kafka_settings)
        bad = {"specversion": "1.0", "id": f"bad-{uuid.uuid4().hex}", "source": "/tests", "type": "crm.purchase.v1",
               "data": {"customer": {"customer_id": "x"}, "order_id": "o", "amount": -5}}  # fmt: skip
        try:
            publisher.publish_raw(Topic.INTERACTIONS, json.dumps(bad).encode(), b"x")
            assert replay(events, publisher, progress=False) == len(events)
        finally:
            publisher.close()
        deadline = time.monotonic() + 90
        pending = set(expected)
        while pending and time.monotonic() < deadline:
            for cid in sorted(pending):
                response = client.get(f"/customers/{cid}")
                if response.status_code == 200:
                    agg = response.json()["aggregates"]
                    want = expected[cid]
                    if agg["rating_count"] == want["ratings"] and agg["orders"] == want["orders"]:
                        pending.discard(cid)
            time.sleep(0.3)
        assert not pending, f"{len(pending)} customers never caught up"
        for cid, want in expected.items():
            agg = client.get(f"/customers/{cid}").json()["aggregates"]
            assert agg["revenue"] == pytest.approx(want["revenue"], abs=1e-6), cid
            identify = 1 if cid.startswith("ml-") else 0
            assert agg["event_count"] == want["ratings"] + want["orders"] + identify
            if want["ratings"]:
                assert agg["average_rating"] == pytest.approx(want["rating_sum"] / want["ratings"])
        profile = client.get(f"/customers/{movielens_customer_id('1')}").json()
        assert profile["traits"]["occupation"] == "technician"
        ledger = client.app.state.runtime.consumers[0].ledger  # type: ignore[attr-defined]
        assert ledger.count() >= len(events)
    reasons = _dead_letter_reasons(kafka_settings, bad["id"])
    assert reasons == ["invalid_payload"], "a bad event is dead-lettered with its reason; the rest applied"
    subjects = _resolved_subjects(kafka_settings, {e.event.id for e in events})
    assert len(subjects) == len(events), "every interaction is republished on the resolved topic"
    by_subject = Counter(subjects.values())
    assert set(by_subject) == set(expected)
