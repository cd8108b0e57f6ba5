"""The support inbox in a real browser: tickets opened by real support messages through the fleet, their
triage in words, suggestions from the knowledge base, and what an agent does with them."""

from __future__ import annotations

import re
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from services.support.ml.dataset import default_catalog
from tests.console.support import HOSTILE, create_key, gateway_get, shot, sign_in
from tests.fleet_support import RunningFleet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REFUND = "Please refund me, the blender I bought arrived broken. Order #A-99120"
REFUND_ARTICLES = {"kb-refund", "kb-delivery-damaged"}
HOSTILE_NAME = '<img src=x onerror="window.hacked=true">Mallory'


@dataclass(frozen=True)
class Ticket:
    id: str
    customer_id: str
    name: str


@dataclass(frozen=True)
class Inbox:
    refund: Ticket
    hostile: Ticket


def _publish_and_wait(fleet: RunningFleet, name: str, text: str) -> Ticket:
    customer = f"console-sup-{uuid.uuid4().hex[:8]}"
    with fleet.client() as client:
        sent = client.post(
            "/v1/events",
            json=[
                {"type": "identify", "customer": {"customer_id": customer}, "traits": {"name": name}},
                {
                    "type": "support_message",
                    "customer": {"customer_id": customer},
                    "channel": "email",
                    "text": text,
                },
            ],
        )
        assert sent.status_code == 202, sent.text
        found: list[str] = []

        def ticket_and_name() -> bool:
            tickets = client.get("/v1/support/tickets", params={"limit": 500}).json()["tickets"]
            found[:] = [t["id"] for t in tickets if t["customer_id"] == customer]
            recent = client.get("/v1/customers", params={"limit": 50}).json()["items"]
            named = any(c["id"] == customer and (c.get("traits") or {}).get("name") for c in recent)
            return bool(found) and named

        wait_until(
            ticket_and_name, timeout_s=180, what="the support message to become a named customer's ticket"
        )
    return Ticket(found[0], customer, name)


@pytest.fixture(scope="module")
def inbox(console_fleet: RunningFleet) -> Inbox:
    """Two tickets, each opened by a support message published through /v1/events: a refund request and a
    message (and a customer name) written to break the page."""
    # The shipped intent catalog, straight to the service (the session's fuzz may have PUT another; a refit
    # on the whole catalog can outlast the gateway's per-call timeout).
    put = httpx.put(
        f"{console_fleet.url_of('support')}/intents",
        json={"intents": default_catalog()},
        headers=console_fleet.internal_headers(),
        timeout=300,
    )
    assert put.status_code == 200, put.text
    return Inbox(
        refund=_publish_and_wait(console_fleet, "Grace Hopper", REFUND),
        hostile=_publish_and_wait(console_fleet, HOSTILE_NAME, f"{HOSTILE}. Where is my order?"),
    )


def _ticket(fleet: RunningFleet, ticket_id: str) -> dict[str, Any]:
    answer = gateway_get(fleet, f"/v1/support/tickets/{ticket_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _feedback(fleet: RunningFleet, ticket_id: str) -> list[tuple[str, str]]:
    """The (article, action) rows the support service stored for a ticket, read from its own database."""
    path = fleet.data_dir / "support" / "support.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT article_id, action FROM support_feedback WHERE ticket_id = ? ORDER BY id", (ticket_id,)
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_the_inbox_lists_a_published_ticket_by_queue_and_urgency(
    page: Page, console_fleet: RunningFleet, inbox: Inbox
) -> None:
    ticket = _ticket(console_fleet, inbox.refund.id)
    page.goto("/console/inbox")
    row = page.locator(f'tr[data-ticket="{inbox.refund.id}"]')
    expect(row).to_be_visible()
    expect(row.get_by_role("link", name="Grace Hopper")).to_have_attribute(
        "href", f"/console/customers/{inbox.refund.customer_id}"
    )
    expect(row).to_contain_text(ticket["intent"].replace("_", " "))
    expect(row.locator(".band")).to_have_text(ticket["urgency"])
    expect(row.locator("td:nth-child(4)")).to_have_text(ticket["queue"])
    counts = page.locator("table.counts")
    expect(counts.get_by_role("rowheader", name=ticket["queue"])).to_be_visible()
    shot(page, "inbox")

    page.get_by_label("Queue", exact=True).select_option(ticket["queue"])
    page.get_by_label("Urgency", exact=True).select_option(ticket["urgency"])
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(f"queue={ticket['queue']}&urgency={ticket['urgency']}"))
    expect(row).to_be_visible()
    queues = page.locator("table.tickets tbody td:nth-child(4)").all_inner_texts()
    assert set(queues) == {ticket["queue"]}
    assert set(page.locator("table.tickets tbody .band").all_inner_texts()) == {ticket["urgency"]}

    row.get_by_role("link", name="Grace Hopper").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Grace Hopper")


def test_a_ticket_shows_its_triage_in_words_and_suggestions_from_the_right_article(
    page: Page, console_fleet: RunningFleet, inbox: Inbox
) -> None:
    ticket = _ticket(console_fleet, inbox.refund.id)
    message = ticket["messages"][0]
    page.goto("/console/inbox")
    page.locator(f'tr[data-ticket="{inbox.refund.id}"] a.open-ticket').click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ticket from Grace Hopper")
    triage = page.locator("article.message").first
    expect(triage.locator("blockquote")).to_have_text(REFUND)
    expect(triage.locator("dd.intent")).to_have_text(
        re.compile(rf"^{message['intent'].replace('_', ' ')} \(\d+% sure\)$")
    )
    expect(triage.locator("ul.entities")).to_contain_text("order A-99120")
    expect(triage.locator("dd.routing")).to_have_text(
        f"routed to {message['queue']} on intent {message['intent'].replace('_', ' ')}, English, "
        f"urgency {message['urgency']}"
    )
    suggestions = gateway_get(console_fleet, f"/v1/support/tickets/{inbox.refund.id}/suggestions").json()
    first = page.locator("li.suggestion").first
    expect(first).to_have_attribute("data-article", suggestions["suggestions"][0]["article_id"])
    assert first.get_attribute("data-article") in REFUND_ARTICLES
    expect(first.locator("textarea")).to_have_value(suggestions["suggestions"][0]["draft"])
    shot(page, "ticket")


def test_send_records_the_feedback_and_moves_the_ticket_to_pending(
    page: Page, console_fleet: RunningFleet, inbox: Inbox
) -> None:
    page.goto(f"/console/inbox/{inbox.refund.id}")
    expect(page.locator("#ticket-status")).to_contain_text("open")
    first = page.locator("li.suggestion").first
    article = first.get_attribute("data-article")
    first.get_by_role("button", name="Send").click()
    expect(first.locator(".feedback")).to_contain_text("Recorded: sent as is. The ticket is pending")
    expect(page.locator("#ticket-status")).to_have_text("pending: answered, waiting on the customer")
    ticket = _ticket(console_fleet, inbox.refund.id)
    assert ticket["status"] == "pending"
    assert ticket["first_response_at"] is not None
    assert _feedback(console_fleet, inbox.refund.id) == [(article, "sent")]

    # An edited draft is recorded as edited.
    first.locator("textarea").fill("Dear Grace, your refund for order A-99120 is on its way.")
    first.get_by_role("button", name="Send").click()
    expect(first.locator(".feedback")).to_contain_text("Recorded: sent after editing")
    assert _feedback(console_fleet, inbox.refund.id)[-1] == (article, "edited")


def test_resolve_moves_the_ticket_and_a_read_only_key_cannot_answer(
    browser: Any, page: Page, console_fleet: RunningFleet, inbox: Inbox
) -> None:
    reader = sign_in(browser, console_fleet, create_key(console_fleet, "customers:read"))
    reader.goto(f"/console/inbox/{inbox.hostile.id}")
    expect(reader.locator("li.suggestion").first).to_be_visible()
    assert reader.get_by_role("button", name="Send").count() == 0
    assert reader.get_by_role("button", name=re.compile("^Escalate")).count() == 0
    expect(reader.locator("#h-state + dl + p")).to_contain_text("need the customers:write scope")
    reader.context.close()

    page.goto(f"/console/inbox/{inbox.hostile.id}")
    page.get_by_role("button", name="Mark resolved").click()
    expect(page.locator("#ticket-result")).to_contain_text("The ticket is resolved")
    expect(page.locator("#ticket-status")).to_have_text("resolved")
    assert _ticket(console_fleet, inbox.hostile.id)["status"] == "resolved"
    page.goto("/console/inbox?status=resolved")
    expect(page.locator(f'tr[data-ticket="{inbox.hostile.id}"]')).to_be_visible()


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="PATCH /v1/support/tickets/{id} takes only a status (TicketStatusIn): the support service "
    "cannot be asked to escalate a ticket yet; remove this mark once it can",
)
def test_escalate_hands_the_ticket_to_a_person(page: Page, console_fleet: RunningFleet, inbox: Inbox) -> None:
    assert not _ticket(console_fleet, inbox.refund.id)["escalated"]
    page.goto(f"/console/inbox/{inbox.refund.id}")
    page.get_by_role("button", name="Escalate to a person").click()
    expect(page.locator("#ticket-result")).to_contain_text("scalated")  # the answer, either way
    ticket = _ticket(console_fleet, inbox.refund.id)
    assert ticket["status"] == "open"
    assert ticket["escalated"], ticket
    expect(page.locator("#ticket-escalation")).to_contain_text("escalated to a person")


def test_hostile_text_and_names_show_as_text(page: Page, inbox: Inbox) -> None:
    page.goto(f"/console/inbox/{inbox.hostile.id}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Ticket from {HOSTILE_NAME}")
    expect(page.locator("article.message blockquote").first).to_contain_text(HOSTILE)
    assert page.evaluate("window.hacked") is None
    assert page.locator("main img").count() == 0
    page.goto("/console/inbox?status=")
    expect(page.locator(f'tr[data-ticket="{inbox.hostile.id}"]')).to_contain_text(HOSTILE_NAME)
    assert page.evaluate("window.hacked") is None
    assert page.locator("main img").count() == 0
