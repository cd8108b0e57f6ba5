"""POST /v1/events against the real embedded broker: validation, keys, idempotency, broker outages."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from services.gateway.app import create_app
from shared.auth import Scope
from shared.broker import EmbeddedBroker
from shared.contracts import Topic
from shared.settings import KafkaSettings
from tests.gateway.conftest import make_settings
from tests.gateway.support import make_key, read_topic


def _purchase(customer: dict[str, object], order: str) -> dict[str, object]:
    return {
        "type": "purchase",
        "customer": customer,
        "order_id": order,
        "amount": 20.0,
        "currency": "EUR",
        "items": [{"item_id": "sku-1", "quantity": 2, "price": 10.0}],
    }


def test_batch_is_published_keyed_by_customer_with_per_item_errors(
    client: TestClient, kafka_bootstrap: str, unique: str
) -> None:
    key = make_key(client, Scope.EVENTS_WRITE)
    cloud_event = {
        "specversion": "1.0",
        "id": f"shop-{unique}",
        "source": "/shop",
        "type": "crm.review.v1",
        "data": {"customer": {"customer_id": f"c-{unique}"}, "text": "Great!", "stars": 5},
    }
    batch = [
        _purchase({"email": f"Ada-{unique}@Example.com"}, f"o-{unique}"),
        {"type": "purchase", "customer": {"customer_id": "x"}},  # no order_id, no amount
        cloud_event,
        {
            "type": "churn_risk_changed",
            "customer_id": "x",
            "probability": 0.5,
            "band": "low",
            "model_version": "1",
        },
        {"type": "teleport", "customer": {"customer_id": "x"}},
        {
            "type": "recommendation_reaction",
            "customer_id": f"c-{unique}",
            "item_id": "50",
            "reaction": "click",
        },
    ]
    response = client.post("/v1/events", json=batch, headers={"X-API-Key": key})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert {e["index"]: e["error"] for e in body["errors"]} == {
        1: "InvalidPayload",
        3: "EventTypeNotAccepted",
        4: "UnknownEventType",
    }
    assert f"shop-{unique}" in body["ids"]
    interactions = {v["id"]: (k, v) for k, v in read_topic(kafka_bootstrap, Topic.INTERACTIONS)}
    purchase_key, purchase = interactions[body["ids"][0]]
    assert purchase_key == f"email:ada-{unique}@example.com"
    assert purchase["type"] == "crm.purchase.v1"
    assert purchase["data"]["order_id"] == f"o-{unique}"
    review_key, review = interactions[f"shop-{unique}"]
    assert review_key == f"c-{unique}"
    assert review["source"] == "/shop"
    reactions = {v["id"]: k for k, v in read_topic(kafka_bootstrap, Topic.RECOMMENDATION_REACTION)}
    assert reactions[body["ids"][2]] == f"c-{unique}"


def test_single_event_and_refusals(client: TestClient) -> None:
    key = make_key(client, Scope.EVENTS_WRITE)
    headers = {"X-API-Key": key}
    one = client.post("/v1/events", json=_purchase({"customer_id": "c1"}, "o1"), headers=headers)
    assert one.status_code == 202
    assert one.json()["accepted"] == 1
    all_bad = client.post("/v1/events", json=[{"type": "purchase"}], headers=headers)
    assert all_bad.status_code == 422
    assert all_bad.json()["error"] == "InvalidRequest"
    assert all_bad.json()["detail"][0]["index"] == 0
    not_json = client.post(
        "/v1/events", content=b"{nope", headers={**headers, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    assert client.post("/v1/events", json=[], headers=headers).status_code == 422


def test_batch_size_limit(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(kafka_settings, tmp_path, max_batch_size=3))) as client:
        key = make_key(client, Scope.EVENTS_WRITE)
        events = [_purchase({"customer_id": "c1"}, f"o{i}") for i in range(4)]
        response = client.post("/v1/events", json=events, headers={"X-API-Key": key})
        assert response.status_code == 413
        assert response.json()["error"] == "PayloadTooLarge"


def test_idempotency_key_replays_the_first_answer(
    client: TestClient, kafka_bootstrap: str, unique: str
) -> None:
    key = make_key(client, Scope.EVENTS_WRITE)
    events = [_purchase({"customer_id": f"c-{unique}"}, f"o-{unique}-{i}") for i in range(3)]
    headers = {"X-API-Key": key, "Idempotency-Key": f"req-{unique}"}
    first = client.post("/v1/events", json=events, headers=headers)
    again = client.post("/v1/events", json=events, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    different = client.post("/v1/events", json=events[:1], headers=headers)
    assert different.status_code == 409
    # The same key under another API key is another request.
    other = make_key(client, Scope.EVENTS_WRITE)
    assert client.post("/v1/events", json=events, headers={**headers, "X-API-Key": other}).status_code == 202
    on_topic = [
        v["id"] for _, v in read_topic(kafka_bootstrap, Topic.INTERACTIONS) if v["id"] in first.json()["ids"]
    ]
    assert sorted(on_topic) == sorted(first.json()["ids"])  # published once, not twice


def test_broker_paused_answers_503_and_loses_nothing_that_got_202(
    kafka_settings: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    with EmbeddedBroker() as broker:
        kafka = kafka_settings.model_copy(update={"bootstrap": broker.bootstrap})
        settings = make_settings(kafka, tmp_path, publish_timeout_s=1.5)
        with TestClient(create_app(settings)) as client:
            headers = {"X-API-Key": make_key(client, Scope.EVENTS_WRITE)}
            acknowledged: list[str] = []

            def send(n: int) -> object:
                events = [
                    _purchase({"customer_id": f"c-{unique}-{i}"}, f"o-{unique}-{n}-{i}") for i in range(20)
                ]
                response = client.post("/v1/events", json=events, headers=headers)
                if response.status_code == 202:
                    acknowledged.extend(response.json()["ids"])
                return response

            assert send(0).status_code == 202  # type: ignore[attr-defined]
            broker.pause()
            try:
                paused = send(1)
                assert paused.status_code == 503  # type: ignore[attr-defined]
                assert paused.json()["error"] == "ServiceUnavailable"  # type: ignore[attr-defined]
                assert int(paused.headers["Retry-After"]) >= 1  # type: ignore[attr-defined]
            finally:
                broker.resume()
            deadline = time.monotonic() + 30
            statuses = []
            while time.monotonic() < deadline:
                statuses.append(send(2).status_code)  # type: ignore[attr-defined]
                if statuses[-1] == 202:
                    break
            assert statuses[-1] == 202, statuses
            on_topic = {
                v["id"] for _, v in read_topic(broker.bootstrap, Topic.INTERACTIONS, expect=len(acknowledged))
            }
            assert set(acknowledged) <= on_topic
            assert len(acknowledged) == 40
