"""Webhooks end to end: a fleet event on Kafka -> signed POST to a local receiver, retried, logged."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from services.gateway.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    handle_fleet_events,
    verify_signature,
)
from shared.contracts import CloudEvent, EventTypeName, Topic
from shared.contracts.events import ChurnRiskChanged, CustomerErased
from shared.kafka import EventPublisher, InboundEvent
from shared.settings import KafkaSettings
from tests.gateway.support import ADMIN_KEY, serving

HEADERS = {"X-API-Key": ADMIN_KEY}


def receiver(fail_first: int) -> tuple[FastAPI, list[dict[str, Any]]]:
    """A subscriber's endpoint on 127.0.0.1 that fails its first ``fail_first`` calls."""
    app = FastAPI()
    received: list[dict[str, Any]] = []

    @app.post("/hook")
    async def hook(request: Request) -> Any:
        received.append({"headers": dict(request.headers), "body": await request.body()})
        if len(received) <= fail_first:
            return JSONResponse({"oops": True}, status_code=500)
        return {"ok": True}

    return app, received


def wait_for(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_churn_event_is_delivered_signed_after_a_retry(
    client: TestClient, kafka_settings: KafkaSettings, unique: str
) -> None:
    app, all_received = receiver(fail_first=1)
    with serving(app) as server:
        created = client.post(
            "/v1/webhooks",
            json={
                "url": f"{server.url}/hook",
                "event_types": ["churn_risk_changed"],
                "description": "crm alerts",
            },
            headers=HEADERS,
        )
        assert created.status_code == 201, created.text
        subscription = created.json()
        assert subscription["event_types"] == [EventTypeName.CHURN_RISK_CHANGED.value]
        other = client.post(
            "/v1/webhooks",
            json={"url": f"{server.url}/hook", "event_types": ["segment_membership_changed"]},
            headers=HEADERS,
        ).json()
        bad = client.post(
            "/v1/webhooks", json={"url": f"{server.url}/hook", "event_types": ["purchase"]}, headers=HEADERS
        )
        assert bad.status_code == 422

        event = CloudEvent.new(
            EventTypeName.CHURN_RISK_CHANGED,
            ChurnRiskChanged(
                customer_id=f"c-{unique}",
                probability=0.81,
                band="high",
                previous_band="medium",
                reasons=["no purchase for 94 days, +0.21"],
                model_version="test",
            ),
            source="/churn",
            subject=f"c-{unique}",
        )
        publisher = EventPublisher(kafka_settings)
        try:
            publisher.publish_and_wait([(Topic.CHURN_RISK_CHANGED.value, event, f"c-{unique}")])
        finally:
            publisher.close()

        def received_for_event() -> list[dict[str, Any]]:
            # The topic is shared with other tests' events: look at this event's calls only.
            return [r for r in all_received if json.loads(r["body"])["id"] == event.id]

        wait_for(lambda: len(received_for_event()) >= 2, timeout_s=60)
        received = received_for_event()
        first, second = received[0], received[1]
        # The retry is the same delivery, signed again.
        assert first["headers"][DELIVERY_HEADER.lower()] == second["headers"][DELIVERY_HEADER.lower()]
        body = second["body"]
        assert json.loads(body)["id"] == event.id
        assert json.loads(body)["data"]["band"] == "high"
        timestamp = second["headers"][TIMESTAMP_HEADER.lower()]
        assert abs(int(timestamp) - time.time()) < 60
        assert verify_signature(
            subscription["secret"], timestamp, body, second["headers"][SIGNATURE_HEADER.lower()]
        )
        assert not verify_signature(
            "whsec_wrong", timestamp, body, second["headers"][SIGNATURE_HEADER.lower()]
        )

        def delivered() -> bool:
            log = client.get(f"/v1/webhooks/{subscription['id']}/deliveries", headers=HEADERS).json()
            return any(d["event_id"] == event.id and d["status"] == "delivered" for d in log)

        wait_for(delivered)
        log = client.get(f"/v1/webhooks/{subscription['id']}/deliveries", headers=HEADERS).json()
        log = [d for d in log if d["event_id"] == event.id]
        assert len(log) == 1
        assert log[0]["attempts"] == 2
        assert log[0]["event_id"] == event.id
        assert log[0]["last_status_code"] == 200
        # The segment subscription got nothing; exactly two calls reached the receiver.
        other_log = client.get(f"/v1/webhooks/{other['id']}/deliveries", headers=HEADERS).json()
        assert event.id not in [d["event_id"] for d in other_log]
        time.sleep(0.3)
        assert len(received_for_event()) == 2
        # Erasure of the customer removes the delivered log of their events.
        erase(client.app.state, f"c-{unique}")  # type: ignore[attr-defined]
        after = client.get(f"/v1/webhooks/{subscription['id']}/deliveries", headers=HEADERS).json()
        assert event.id not in [d["event_id"] for d in after]


def erase(app_state: Any, customer_id: str) -> None:
    """Apply a customer-erased event through the webhook consumer's handler, as the consumer does."""
    payload = CustomerErased(customer_id=customer_id, erasure_id=f"e-{customer_id}")
    event = CloudEvent.new(EventTypeName.CUSTOMER_ERASED, payload, source="/profile", subject=customer_id)
    inbound = InboundEvent(event, payload, Topic.CUSTOMER_ERASED.value, 0, 0)
    with app_state.runtime.session_factory() as session, session.begin():
        handle_fleet_events([inbound], session)


def test_delivery_fails_after_the_last_attempt_and_subscriptions_can_be_deleted(client: TestClient) -> None:
    # Nothing listens on this port: every attempt fails, then the delivery is marked failed.
    created = client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["customer_erased"]},
        headers=HEADERS,
    ).json()
    app_state = client.app.state  # type: ignore[attr-defined]
    app_state.webhooks.max_attempts = 2
    erase(app_state, "c1")

    def failed() -> bool:
        log = client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=HEADERS).json()
        return bool(log) and log[0]["status"] == "failed"

    wait_for(failed)
    log = client.get(f"/v1/webhooks/{created['id']}/deliveries?status=failed", headers=HEADERS).json()
    assert log[0]["attempts"] == 2
    assert log[0]["last_error"]
    assert client.delete(f"/v1/webhooks/{created['id']}", headers=HEADERS).status_code == 204
    assert client.delete(f"/v1/webhooks/{created['id']}", headers=HEADERS).status_code == 404
    assert created["id"] not in [w["id"] for w in client.get("/v1/webhooks", headers=HEADERS).json()]
