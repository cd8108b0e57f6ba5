"""Triage, catalog changes, suggestions and feedback against the real encoders and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from services.support.service import SupportService
from shared.contracts import events as ev
from shared.contracts.events import CustomerRef


def triage(client: TestClient, text: str, **extra: str) -> dict:
    response = client.post("/triage", json={"text": text, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_refund_cancellation_and_chinese_delivery_complaint(client: TestClient) -> None:
    refund = triage(client, "Hi, I sent the kettle back last week, can I have my money back? Order #A-55120")
    assert refund["intent"] == "refund"
    assert {"kind": "order_id", "value": "A-55120", "text": "Order #A-55120"} in refund["entities"]

    cancel = triage(
        client, "This is the third time my box is late. Fix it or I'm cancelling my subscription."
    )
    assert cancel["intent"] == "cancel"
    assert cancel["escalated"] is True
    assert "intent cancel" in cancel["escalation_reasons"]
    assert cancel["queue"] == "retention"

    delivery = triage(client, "快递显示已经签收了，但是我根本没有收到包裹，太气人了")
    assert delivery["language"] == "zh"
    assert delivery["intent"] == "delivery_problem"
    assert delivery["queue"] == "chinese-desk"


def test_a_message_unlike_any_intent_is_unknown_and_goes_to_a_person(client: TestClient) -> None:
    result = triage(client, "What's the best way to keep basil alive on a windowsill?")
    assert result["intent"] == "unknown"
    assert result["escalated"] is True
    assert "low confidence" in result["escalation_reasons"]


def test_entities_amounts_dates_phones_emails(client: TestClient) -> None:
    result = triage(
        client, "You charged me $39.50 twice yesterday, reach me at ada@example.com or +44 20 7946 0958"
    )
    kinds = {e["kind"]: e["value"] for e in result["entities"]}
    assert kinds["amount"] == "39.50 USD"
    assert kinds["email"] == "ada@example.com"
    assert kinds["phone"] == "+442079460958"
    assert "date" in kinds
    assert result["intent"] == "billing"


def test_a_catalog_change_is_used_by_the_next_message(client: TestClient) -> None:
    catalog = client.get("/intents").json()
    before = triage(client, "Can I bring my dog into the Leeds store?")
    assert before["top_intent"] != "store_visit"
    new_intent = {
        "name": "store_visit",
        "description": "Questions about visiting a physical store: opening hours, pets, parking.",
        "examples": [
            {"text": "What time does the Leeds store open on Sunday?"},
            {"text": "Is there parking at your Manchester shop?"},
            {"text": "Are dogs allowed in your stores?"},
            {"text": "Can I visit the showroom without an appointment?"},
            {"text": "Where is your nearest store?"},
            {"text": "门店几点开门", "language": "zh"},
        ],
    }
    # PUT answers once a model fitted on the new catalog serves: the very next message uses it (how long
    # the refit takes is a figure of bench/support_latency.py, not a test).
    response = client.put("/intents", json={"intents": [*catalog["intents"], new_intent]})
    assert response.status_code == 200, response.text
    assert "store_visit" in {i["name"] for i in response.json()["intents"]}
    after = triage(client, "Can I bring my dog into the Leeds store?")
    assert after["intent"] == "store_visit"
    assert after["model_version"] != before["model_version"]
    restored = client.put("/intents", json={"intents": catalog["intents"]})
    assert restored.status_code == 200


def test_bad_catalogs_are_refused_in_the_error_shape(client: TestClient) -> None:
    response = client.put(
        "/intents",
        json={
            "intents": [
                {"name": "unknown", "examples": [{"text": "x"}]},
                {"name": "b", "examples": [{"text": "y"}]},
            ]
        },
    )
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidCatalog"


def _message(service: SupportService, client: TestClient, customer: str, text: str, event_id: str) -> str:
    factory = client.app.state.runtime.session_factory  # type: ignore[attr-defined]
    payload = ev.SupportMessage(customer=CustomerRef(customer_id=customer), channel="email", text=text)
    with factory.begin() as session:
        service.record_identify(session, customer, {"first_name": "Ada"})
        service.record_purchase(session, customer, "order-1001", 39.0, datetime(2026, 12, 1, tzinfo=UTC))
        outgoing = service.handle_messages(session, [(event_id, customer, datetime.now(UTC), payload)])
    assert len(outgoing) == 1
    return str(outgoing[0].data["ticket_id"])  # type: ignore[index]


def test_suggestions_come_from_the_right_article_and_feedback_ranks_them(client: TestClient) -> None:
    service: SupportService = client.app.state.support_service  # type: ignore[attr-defined]
    ticket_id = _message(
        service,
        client,
        "cust-suggest",
        "How do I get a return label for order-1001? The shoes don't fit.",
        "evt-s-1",
    )
    body = client.get(f"/tickets/{ticket_id}/suggestions").json()
    assert body["intent"] == "return_exchange"
    top = body["suggestions"][0]
    assert top["article_id"] == "kb-returns"
    assert "Ada" in top["draft"]
    assert "ORDER-1001" in top["draft"] or "order-1001" in top["draft"].lower()
    second = body["suggestions"][1]["article_id"]

    for _ in range(3):
        response = client.post(
            f"/tickets/{ticket_id}/suggestions/{top['article_id']}/feedback", json={"action": "rejected"}
        )
        assert response.status_code == 200
    for _ in range(3):
        client.post(f"/tickets/{ticket_id}/suggestions/{second}/feedback", json={"action": "sent"})
    reranked = client.get(f"/tickets/{ticket_id}/suggestions").json()["suggestions"]
    scores = {s["article_id"]: s["score"] for s in reranked}
    assert scores[second] - scores.get(top["article_id"], -1) > body["suggestions"][1]["score"] - top["score"]

    ticket = client.get(f"/tickets/{ticket_id}").json()
    assert ticket["status"] == "pending"  # an answer was sent
    assert ticket["first_response_at"] is not None


def test_tickets_open_pending_resolved_and_reopened(client: TestClient) -> None:
    service: SupportService = client.app.state.support_service  # type: ignore[attr-defined]
    first = _message(service, client, "cust-life", "Where is my parcel? I ordered last Monday.", "evt-l-1")
    assert client.patch(f"/tickets/{first}", json={"status": "resolved"}).json()["status"] == "resolved"
    again = _message(service, client, "cust-life", "It still hasn't arrived.", "evt-l-2")
    assert again == first
    ticket = client.get(f"/tickets/{first}").json()
    assert ticket["status"] == "open"
    assert ticket["reopened"] == 1
    assert len(ticket["messages"]) == 2
    summary = client.get("/customers/cust-life/support").json()
    assert summary["open_tickets"] == 1
    assert summary["last_intent"] == ticket["intent"]


def test_missing_ticket_is_404_in_the_error_shape(client: TestClient) -> None:
    response = client.get("/tickets/tkt_missing")
    assert response.status_code == 404
    assert response.json()["error"] == "TicketNotFound"
