"""Support signals (crm.support_triaged.v1) raise churn risk with reasons in words; erasure forgets them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from services.churn.settings import ChurnSettings
from shared.contracts import EventTypeName
from shared.contracts import events as ev
from shared.contracts.support import SupportTriaged
from tests.churn.test_service import NOW, apply, inbound, purchase, ready_client


@pytest.fixture
def client(make_settings: Callable[..., ChurnSettings]) -> Iterator[TestClient]:
    yield from ready_client(make_settings())


def triaged(customer: str, intent: str, days_ago: float) -> object:
    payload = SupportTriaged(
        customer_id=customer,
        ticket_id=f"tkt-{customer}",
        source_event_id=f"msg-{customer}-{intent}-{days_ago}",
        language="en",
        intent=intent,
        top_intent=intent,
        confidence=0.9,
        urgency="high",
        queue="retention",
        escalated=intent == "cancel",
        ticket_status="open",
        model_version="support-test",
    )
    return inbound(
        EventTypeName.SUPPORT_TRIAGED, payload, subject=customer, when=NOW - timedelta(days=days_ago)
    )


def test_a_cancel_intent_raises_churn_risk_with_a_reason_in_words(client: TestClient) -> None:
    history = [purchase("sup-a", NOW - timedelta(days=d)) for d in (200, 150, 100, 60, 30)]
    apply(client, history)
    before = client.get("/churn/sup-a").json()
    apply(client, [triaged("sup-a", "cancel", 2)])  # type: ignore[list-item]
    after = client.get("/churn/sup-a").json()
    assert after["probability"] > before["probability"]
    cancel = next(r for r in after["reasons"] if r["feature"] == "support_cancel_intent")
    assert cancel["text"] == f"asked to cancel 2 days ago, {cancel['weight']:+.2f}"
    assert cancel["weight"] > 0

    # Erasure forgets the signal with the rest of the customer.
    apply(
        client,
        [inbound(EventTypeName.CUSTOMER_ERASED, ev.CustomerErased(customer_id="sup-a", erasure_id="e1"))],
    )
    apply(client, history)
    again = client.get("/churn/sup-a").json()
    assert not any(r["text"].startswith("asked to cancel") for r in again["reasons"])
