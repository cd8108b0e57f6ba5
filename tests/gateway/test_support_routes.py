"""The /v1/support routes against the real fleet: a support message sent to the gateway becomes a triaged
ticket with suggestions; catalog, articles, feedback and triage go through to the support service."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.support.ml.dataset import default_catalog
from tests.fleet_support import RunningFleet, wait_until


@pytest.fixture(autouse=True)
def default_intents(real_fleet: RunningFleet) -> None:
    """The shipped intent catalog: the session's fuzz runs (they PUT generated catalogs) may have left another."""
    # Straight to the service: a refit on the whole catalog can outlast the gateway's per-call timeout.
    put = httpx.put(
        f"{real_fleet.url_of('support')}/intents",
        json={"intents": default_catalog()},
        headers=real_fleet.internal_headers(),
        timeout=300,
    )
    assert put.status_code == 200, put.text


def test_a_support_message_becomes_a_ticket_with_suggestions(real_fleet: RunningFleet) -> None:
    customer = f"sup-{uuid.uuid4().hex[:8]}"
    with real_fleet.client() as client:
        sent = client.post(
            "/v1/events",
            json={
                "type": "crm.support_message.v1",
                "customer": {"customer_id": customer},
                "channel": "email",
                "text": "Please refund me, the blender I bought arrived broken. Order #A-99120",
            },
        )
        assert sent.status_code == 202, sent.text
        tickets: list[dict] = []

        def has_ticket() -> bool:
            nonlocal tickets
            tickets = [
                t
                for t in client.get("/v1/support/tickets", params={"limit": 500}).json()["tickets"]
                if t["customer_id"] == customer
            ]
            return bool(tickets)

        wait_until(has_ticket, timeout_s=120, what="the support message to become a ticket")
        ticket = client.get(f"/v1/support/tickets/{tickets[0]['id']}").json()
        assert ticket["messages"][0]["intent"] in {"refund", "delivery_problem"}
        assert {"kind": "order_id", "value": "A-99120", "text": "Order #A-99120"} in ticket["messages"][0][
            "entities"
        ]

        suggestions = client.get(f"/v1/support/tickets/{ticket['id']}/suggestions").json()["suggestions"]
        assert suggestions
        assert suggestions[0]["article_id"] in {"kb-refund", "kb-delivery-damaged"}
        feedback = client.post(
            f"/v1/support/tickets/{ticket['id']}/suggestions/{suggestions[0]['article_id']}/feedback",
            json={"action": "sent"},
        )
        assert feedback.status_code == 200
        assert feedback.json()["status"] == "pending"

        summary = client.get(f"/v1/support/customers/{customer}").json()
        assert summary["tickets"] == 1


def test_catalog_articles_and_triage_through_the_gateway(real_fleet: RunningFleet) -> None:
    with real_fleet.client() as client:
        catalog = client.get("/v1/support/intents").json()
        assert {i["name"] for i in catalog["intents"]} >= {"refund", "cancel", "order_status"}
        put = client.put(
            "/v1/support/articles/kb-test-gift",
            json={
                "title": "Gift cards",
                "body": "Gift cards never expire and can be used online.",
                "intents": ["payment_failed"],
            },
        )
        assert put.status_code == 200, put.text
        assert client.get("/v1/support/articles/kb-test-gift").json()["title"] == "Gift cards"
        assert client.delete("/v1/support/articles/kb-test-gift").status_code == 204
        assert client.get("/v1/support/articles/kb-test-gift").status_code == 404

        result = client.post(
            "/v1/support/triage", json={"text": "I want to talk to a real person now"}
        ).json()
        assert result["intent"] == "human_agent"
        assert result["escalated"] is True
        bad = client.put("/v1/support/intents", json={"intents": []})
        assert bad.status_code == 422
        assert set(bad.json()) == {"error", "detail", "request_id"}
