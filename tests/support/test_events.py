"""Through the real embedded broker: support messages become tickets and triaged events; erasure removes tickets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer

from services.support.app import create_app
from shared.contracts import CloudEvent, EventTypeName, Topic
from shared.contracts import events as ev
from shared.contracts.events import CustomerRef
from shared.kafka import EventPublisher
from shared.settings import KafkaSettings
from tests.support.conftest import support_settings


def resolved(customer_id: str, type_: str, payload: ev.Payload) -> tuple[str, CloudEvent, str]:
    return (
        Topic.INTERACTIONS_RESOLVED,
        CloudEvent.new(type_, payload, source="/test", subject=customer_id),
        customer_id,
    )


def wait_for(check, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.2)


@pytest.mark.slow
def test_messages_become_tickets_and_triaged_events_and_erasure_removes_them(
    tmp_path: Path, chinese_encoder_dir: Path, kafka_settings: KafkaSettings, unique: str
) -> None:
    settings = support_settings(tmp_path, chinese_encoder_dir, consume_events=True, kafka=kafka_settings)
    customer = f"c-{unique}"
    ref = CustomerRef(customer_id=customer)
    publisher = EventPublisher(kafka_settings)
    triaged = KafkaConsumer(
        Topic.SUPPORT_TRIAGED,
        bootstrap_servers=kafka_settings.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=500,
    )
    try:
        with TestClient(create_app(settings)) as client:
            publisher.publish_and_wait(
                [
                    resolved(
                        customer, EventTypeName.IDENTIFY, ev.Identify(customer=ref, traits={"name": "Ada"})
                    ),
                    resolved(
                        customer,
                        EventTypeName.SUPPORT_MESSAGE,
                        ev.SupportMessage(
                            customer=ref,
                            channel="chat",
                            text="I want to cancel my membership, I'm moving to another shop.",
                        ),
                    ),
                ]
            )
            tickets = wait_for(
                lambda: client.get("/tickets", params={"customer_id": customer}).json()["tickets"]
            )
            assert tickets[0]["intent"] == "cancel"
            assert tickets[0]["escalated"] is True
            assert tickets[0]["queue"] == "retention"

            def our_event() -> list[dict]:
                found = []
                for record in triaged:
                    event = CloudEvent.model_validate_json(record.value)
                    if event.subject == customer:
                        found.append(event.data)
                return found

            data = wait_for(our_event)[0]
            assert data["intent"] == "cancel"
            assert data["ticket_id"] == tickets[0]["id"]
            assert data["escalated"] is True

            erasure = CloudEvent.new(
                EventTypeName.CUSTOMER_ERASED,
                ev.CustomerErased(customer_id=customer, erasure_id=f"er-{unique}"),
                source="/test",
                subject=customer,
            )
            publisher.publish_and_wait([(Topic.CUSTOMER_ERASED, erasure, customer)])
            wait_for(lambda: not client.get("/tickets", params={"customer_id": customer}).json()["tickets"])
            assert client.get(f"/tickets/{tickets[0]['id']}").status_code == 404
            assert client.get(f"/customers/{customer}/support").json()["tickets"] == 0
    finally:
        triaged.close()
        publisher.close()
