"""The support inbox: tickets by queue and urgency, a ticket's triage in words, and reply suggestions an
agent sends as drafted, edits or rejects; escalation and resolution. Built on ``/v1/support`` only.

"Send" records what the agent did with the suggestion (the support service stores it, ranks future
suggestions with it and moves the ticket to pending); the CRM does not deliver the reply itself.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import Response

from services.gateway.console import inbox_views
from services.gateway.console.pages import Band, FormUser, User, get, nothing, page, problem_page, send

router = APIRouter(prefix="/console/inbox", include_in_schema=False)

NAME_SCAN = 500
"""Names come from this many of the most recently seen customers (a ticket's customer has just written)."""
TicketId = Annotated[str, Path(min_length=1, max_length=200)]


def _ticket(ticket_id: str) -> str:
    return f"/v1/support/tickets/{quote(ticket_id, safe='')}"


@router.get("")
async def inbox_page(
    request: Request,
    user: User,
    status: Annotated[str, Query(pattern="^(|open|pending|resolved)$")] = "open",
    queue: Annotated[str, Query(max_length=100)] = "",
    urgency: Band = "",
) -> Response:
    tickets, customers = await asyncio.gather(
        get(request, user, "/v1/support/tickets", status=status, limit=inbox_views.TICKET_SCAN),
        get(request, user, "/v1/customers", limit=NAME_SCAN) if user.can_read else nothing(),
    )
    view = inbox_views.InboxView.of(tickets, customers, status, queue, urgency)
    return page(request, user, "inbox.html", nav="inbox", view=view, statuses=inbox_views.STATUSES)


@router.get("/{ticket_id}")
async def ticket_page(request: Request, user: User, ticket_id: TicketId) -> Response:
    ticket, suggestions = await asyncio.gather(
        get(request, user, _ticket(ticket_id)), get(request, user, f"{_ticket(ticket_id)}/suggestions")
    )
    if not ticket.ok:
        return problem_page(request, user, ticket, f"No ticket with the id {ticket_id!r}.", nav="inbox")
    c360 = await get(request, user, f"/v1/customers/{quote(ticket.body['customer_id'], safe='')}")
    view = inbox_views.TicketView.of(ticket.body, suggestions, c360)
    return page(request, user, "ticket.html", nav="inbox", t=view)


@router.post("/{ticket_id}/suggestions/{article_id}")
async def suggestion_feedback(
    request: Request,
    user: FormUser,
    ticket_id: TicketId,
    article_id: Annotated[str, Path(min_length=1, max_length=200)],
    decision: Annotated[Literal["send", "reject"], Form()],
    reply: Annotated[str, Form(max_length=20_000)] = "",
    draft: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """Send (as drafted or edited) or reject one suggestion: the feedback is recorded with the support
    service, which moves an answered ticket to pending."""
    action = inbox_views.feedback_action(decision, reply, draft)
    body: dict[str, str] = {"action": action}
    if action == "edited":
        body["text"] = reply.strip()
    path = f"{_ticket(ticket_id)}/suggestions/{quote(article_id, safe='')}/feedback"
    answer = await send(request, user, "POST", path, body)
    words = inbox_views.FEEDBACK_WORDS[action]
    return page(request, user, "_feedback.html", answer=answer, words=words, action=action)


@router.post("/{ticket_id}/escalate")
async def escalate(request: Request, user: FormUser, ticket_id: TicketId) -> Response:
    """Hand the ticket to a person: it stays open and is marked escalated."""
    answer = await send(request, user, "PATCH", _ticket(ticket_id), {"status": "open", "escalated": True})
    return page(request, user, "_ticket_state.html", answer=answer, asked="escalate")


@router.post("/{ticket_id}/status")
async def set_status(
    request: Request,
    user: FormUser,
    ticket_id: TicketId,
    status: Annotated[Literal["open", "pending", "resolved"], Form()],
) -> Response:
    """Move the ticket to open, pending or resolved."""
    answer = await send(request, user, "PATCH", _ticket(ticket_id), {"status": status})
    return page(request, user, "_ticket_state.html", answer=answer, asked=status)
