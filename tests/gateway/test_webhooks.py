"""Webhooks end to end: a fleet event on Kafka -> signed POST to a local receiver, retried, logged."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.gateway import repository
from services.gateway.models import Base
from services.gateway.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    handle_fleet_events,
    verify_signature,
)
from shared.contracts import CloudEvent, EventTypeName, Topic
from shared.contracts.events import ChurnRiskChanged, ConsentChanged, CustomerErased, CustomerRef
from shared.db import make_engine
from shared.kafka import EventPublisher, InboundEvent
from shared.settings import KafkaSettings
from tests.gateway.support import ADMIN_KEY, serving

HEADERS = {"X-API-Key": ADMIN_KEY}


def receiver(fail_first: int) -> tuple[FastAPI, list[dict[str, Any]]]:
    """A subscriber's endpoint on 127.0.0.1 that fails the first ``fail_first`` calls of each event (the
    topics hold other tests' events too, which may reach it first)."""
    app = FastAPI()
    received: list[dict[str, Any]] = []

    @app.post("/hook")
    async def hook(request: Request) -> Any:
        body = await request.body()
        received.append({"headers": dict(request.headers), "body": body})
        event_id = json.loads(body)["id"]
        if sum(json.loads(r["body"])["id"] == event_id for r in received) <= fail_first:
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


def churn_event(customer_id: str) -> CloudEvent:
    payload = ChurnRiskChanged(
        customer_id=customer_id,
        probability=0.8,
        band="high",
        previous_band="low",
        reasons=["no purchase for 94 days, +0.21"],
        model_version="test",
    )
    return CloudEvent.new(EventTypeName.CHURN_RISK_CHANGED, payload, source="/churn", subject=customer_id)


def consent_event(customer_id: str, granted: bool, at: datetime) -> CloudEvent:
    """A consent decision as the profile republishes it on the resolved topic (subject = canonical id)."""
    payload = ConsentChanged(
        customer=CustomerRef(customer_id=customer_id), purpose="marketing", granted=granted
    )
    return CloudEvent.new(
        EventTypeName.CONSENT_CHANGED, payload, source="/profile", subject=customer_id, time=at
    )


def publish(kafka_settings: KafkaSettings, records: list[tuple[str, CloudEvent, str]]) -> None:
    publisher = EventPublisher(kafka_settings)
    try:
        publisher.publish_and_wait(records)
    finally:
        publisher.close()


def consent_known(app_state: Any, customer_id: str, granted: bool) -> bool:
    with app_state.runtime.session_factory() as session:
        decision = repository.marketing_consent(session, customer_id)
    return decision is not None and decision.granted is granted


def deliveries(client: TestClient, subscription_id: str, event: CloudEvent) -> list[dict[str, Any]]:
    log = client.get(f"/v1/webhooks/{subscription_id}/deliveries", headers=HEADERS).json()
    return [d for d in log if d["event_id"] == event.id]


def test_marketing_webhook_skips_a_customer_who_withdrew_consent_and_logs_why(
    client: TestClient, kafka_settings: KafkaSettings, unique: str
) -> None:
    app_state = client.app.state  # type: ignore[attr-defined]
    withdrawn, consenting, late = f"w-{unique}", f"g-{unique}", f"l-{unique}"
    withdrawn_at = datetime.now(UTC) - timedelta(days=2)
    app, all_received = receiver(fail_first=0)
    with serving(app) as server:
        url = f"{server.url}/hook"
        marketing = client.post(
            "/v1/webhooks",
            json={"url": url, "event_types": ["churn_risk_changed"], "purpose": "marketing"},
            headers=HEADERS,
        )
        assert marketing.status_code == 201, marketing.text
        assert marketing.json()["purpose"] == "marketing"
        operational = client.post(
            "/v1/webhooks", json={"url": url, "event_types": ["churn_risk_changed"]}, headers=HEADERS
        ).json()
        assert operational["purpose"] == "operational"
        bad = client.post(
            "/v1/webhooks",
            json={"url": url, "event_types": ["churn_risk_changed"], "purpose": "spam"},
            headers=HEADERS,
        )
        assert bad.status_code == 422
        assert bad.json()["error"] == "InvalidRequest"
        # Consent events cannot be subscribed to: the consumer reads them for itself.
        assert (
            client.post(
                "/v1/webhooks", json={"url": url, "event_types": ["consent_changed"]}, headers=HEADERS
            ).status_code
            == 422
        )
        assert {w["id"]: w["purpose"] for w in client.get("/v1/webhooks", headers=HEADERS).json()}[
            marketing.json()["id"]
        ] == "marketing"

        # The withdrawal, then an older grant arriving late: the latest decision by event time stands.
        resolved = Topic.INTERACTIONS_RESOLVED.value
        publish(
            kafka_settings,
            [
                (resolved, consent_event(withdrawn, False, withdrawn_at), withdrawn),
                (resolved, consent_event(withdrawn, True, withdrawn_at - timedelta(days=1)), withdrawn),
                (resolved, consent_event(consenting, True, withdrawn_at), consenting),
            ],
        )
        wait_for(
            lambda: consent_known(app_state, withdrawn, False) and consent_known(app_state, consenting, True)
        )

        about_withdrawn, about_consenting = churn_event(withdrawn), churn_event(consenting)
        publish(
            kafka_settings,
            [
                (Topic.CHURN_RISK_CHANGED.value, about_withdrawn, withdrawn),
                (Topic.CHURN_RISK_CHANGED.value, about_consenting, consenting),
            ],
        )

        def calls(event: CloudEvent) -> list[dict[str, Any]]:
            return [r for r in all_received if json.loads(r["body"])["id"] == event.id]

        # The operational subscription gets both; the marketing one only the consenting customer's.
        wait_for(lambda: len(calls(about_consenting)) == 2 and len(calls(about_withdrawn)) == 1)
        wait_for(
            lambda: all(
                d["status"] == "delivered" for d in deliveries(client, operational["id"], about_withdrawn)
            )
        )
        skipped = deliveries(client, marketing.json()["id"], about_withdrawn)
        assert len(skipped) == 1
        assert skipped[0]["status"] == "skipped"
        assert skipped[0]["attempts"] == 0
        assert skipped[0]["last_error"] == f"marketing consent withdrawn on {withdrawn_at.date().isoformat()}"
        only_skipped = client.get(
            f"/v1/webhooks/{marketing.json()['id']}/deliveries?status=skipped", headers=HEADERS
        ).json()
        assert [d["event_id"] for d in only_skipped] == [about_withdrawn.id]
        wait_for(
            lambda: (
                [d["status"] for d in deliveries(client, marketing.json()["id"], about_consenting)]
                == ["delivered"]
            )
        )
        time.sleep(0.3)
        assert len(calls(about_withdrawn)) == 1

        # A withdrawal that arrives while a delivery waits for its retry stops the retry.
        app_state.webhooks.backoff_s = 600.0
        failing, failing_calls = receiver(fail_first=1)
        with serving(failing) as flaky:
            retried = client.post(
                "/v1/webhooks",
                json={
                    "url": f"{flaky.url}/hook",
                    "event_types": ["churn_risk_changed"],
                    "purpose": "marketing",
                },
                headers=HEADERS,
            ).json()
            about_late = churn_event(late)
            publish(kafka_settings, [(Topic.CHURN_RISK_CHANGED.value, about_late, late)])
            wait_for(lambda: [d["attempts"] for d in deliveries(client, retried["id"], about_late)] == [1])
            publish(kafka_settings, [(resolved, consent_event(late, False, datetime.now(UTC)), late)])
            wait_for(lambda: consent_known(app_state, late, False))
            # The retry falls due now (as after its backoff): the sender checks consent again and skips it.
            delivery_id = deliveries(client, retried["id"], about_late)[0]["id"]
            with app_state.runtime.session_factory() as session, session.begin():
                repository.record_attempt(session, delivery_id, {"next_attempt_at": datetime.now(UTC)})
            wait_for(lambda: deliveries(client, retried["id"], about_late)[0]["status"] == "skipped")
            log = deliveries(client, retried["id"], about_late)[0]
            assert log["attempts"] == 1
            assert (
                log["last_error"] == f"marketing consent withdrawn on {datetime.now(UTC).date().isoformat()}"
            )
            assert len([r for r in failing_calls if json.loads(r["body"])["id"] == about_late.id]) == 1

        # An erasure removes the skipped log about the customer too.
        erase(app_state, withdrawn)
        assert deliveries(client, marketing.json()["id"], about_withdrawn) == []
        assert not consent_known(app_state, withdrawn, False)


def test_a_database_from_before_purposes_gets_the_column(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/old-gateway.db")
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE gateway_webhook_subscriptions (id VARCHAR(64) PRIMARY KEY, url VARCHAR(2000), "
                "event_types JSON, secret VARCHAR(200), description VARCHAR(500), active BOOLEAN, "
                "created_at DATETIME)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO gateway_webhook_subscriptions VALUES "
                "('old', 'http://127.0.0.1:9/hook', '[\"crm.churn_risk_changed.v1\"]', 's', NULL, 1, "
                "'2026-01-01 00:00:00')"
            )
        )
    Base.metadata.create_all(engine)
    repository.add_missing_columns(engine)
    repository.add_missing_columns(engine)  # a second start changes nothing
    with Session(engine) as session:
        assert [(s.id, s.purpose) for s in repository.list_subscriptions(session)] == [("old", "operational")]
    engine.dispose()
