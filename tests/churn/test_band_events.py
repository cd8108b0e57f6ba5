"""Through the real embedded broker: an interaction that moves a customer across a band emits exactly one
churn-risk-changed event; an interaction that does not, emits none."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from services.churn.app import create_app
from services.churn.ml.features import Activity, Kind, to_days
from services.churn.ml.model import ChurnModel
from services.churn.service import ChurnService, ModelHolder
from services.churn.settings import ChurnSettings
from shared.contracts import CloudEvent, EventTypeName, Topic
from shared.contracts import events as ev
from shared.kafka import EventPublisher
from shared.settings import KafkaSettings

# Three purchases of one customer: the first 200 days ago, then two in the last hours. Scores are as of
# the wall clock (the fleet's one clock).
T0 = datetime.now(UTC) - timedelta(days=200, hours=3)
PLAN = [(T0, 15.0), (T0 + timedelta(days=200), 40.0), (T0 + timedelta(days=200, hours=2), 40.0)]


def planned_probability(model: ChurnModel, index: int, as_of: float) -> float:
    """What the service scores after the first ``index + 1`` planned events, as of ``as_of`` (same model,
    same features)."""
    holder = ModelHolder()
    holder.set(model)
    service = ChurnService(ChurnSettings(consume_events=False), holder)
    history = [Activity(to_days(when), Kind.PURCHASE, amount) for when, amount in PLAN[: index + 1]]
    return service.score_histories({"c": history}, as_of, with_reasons=False)["c"].probability


def planned_probabilities(model: ChurnModel) -> list[float]:
    now = to_days(datetime.now(UTC))
    return [planned_probability(model, index, now) for index in range(len(PLAN))]


def read_band_events(
    kafka: KafkaSettings, topic: str, customer: str, settle_s: float = 2.0
) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.servers(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: list[dict[str, Any]] = []
        quiet_until = time.monotonic() + settle_s
        while time.monotonic() < quiet_until:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    event = CloudEvent.model_validate_json(record.value)
                    if event.subject == customer:
                        found.append(event.data)
        return found
    finally:
        consumer.close()


def test_crossing_a_band_emits_exactly_one_event(
    events_model: ChurnModel,
    make_settings: Callable[..., ChurnSettings],
    kafka_settings: KafkaSettings,
    unique: str,
) -> None:
    p_first, p_back, p_again = planned_probabilities(events_model)
    # Precondition of the scenario: the second and third scores sit on the same side of the first.
    assert abs(p_back - p_first) > 0.02
    assert (p_back - p_first) * (p_again - p_first) > 0
    nearer = min(p_back, p_again, key=lambda p: abs(p - p_first))
    threshold = (p_first + nearer) / 2
    # Put the medium/high boundary between the first score and the later ones.
    settings = make_settings(
        consume_events=True,
        kafka=kafka_settings,
        topic_suffix=f".{unique}",
        consumer_group=f"crm-churn-{unique}",
        band_medium=min(threshold, 0.99) / 2,
        band_high=threshold,
    )
    customer = f"cust-{unique}"
    resolved = settings.topic(Topic.INTERACTIONS_RESOLVED)
    out_topic = settings.topic(Topic.CHURN_RISK_CHANGED)
    publisher = EventPublisher(kafka_settings)

    def send(index: int) -> None:
        when, amount = PLAN[index]
        payload = ev.Purchase(
            customer=ev.CustomerRef(customer_id=customer), order_id=f"o{index}", amount=amount
        )
        event = CloudEvent.new(EventTypeName.PURCHASE, payload, source="/tests", subject=customer, time=when)
        publisher.publish_and_wait([(resolved, event, customer)])

    def wait_for_score(client: TestClient, index: int) -> dict[str, Any]:
        """The customer's score once it is exactly the planned one for the first ``index + 1`` events, as
        of the time the service measured against."""
        deadline = time.monotonic() + 30
        while True:
            body = client.get(f"/churn/{customer}").json()
            if body["has_history"]:
                as_of = to_days(datetime.fromisoformat(body["as_of"]))
                if body["probability"] == pytest.approx(
                    planned_probability(events_model, index, as_of), abs=1e-9
                ):
                    return body
            assert time.monotonic() < deadline, body
            time.sleep(0.1)

    try:
        with TestClient(create_app(settings)) as client:
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz").json()
                time.sleep(0.1)
            send(0)
            first = wait_for_score(client, 0)
            band_first = first["band"]
            initial = read_band_events(kafka_settings, out_topic, customer)
            assert [(e["previous_band"] if "previous_band" in e else None, e["band"]) for e in initial] == [
                (None, band_first)
            ]

            send(1)
            second = wait_for_score(client, 1)
            assert second["band"] != band_first
            after_cross = read_band_events(kafka_settings, out_topic, customer)
            crossing = after_cross[len(initial) :]
            assert len(crossing) == 1
            assert crossing[0]["previous_band"] == band_first
            assert crossing[0]["band"] == second["band"]
            assert crossing[0]["reasons"]
            assert crossing[0]["model_version"] == events_model.version

            send(2)
            third = wait_for_score(client, 2)
            assert third["band"] == second["band"]
            assert read_band_events(kafka_settings, out_topic, customer) == after_cross
    finally:
        publisher.close()
