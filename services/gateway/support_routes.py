"""The support assistant's public routes (``/v1/support/...``), forwarded to the support service: the intent
catalog, the knowledge base, tickets, reply suggestions and feedback, and triage of a text. Bodies and
answers are typed with the support service's own models (shared/contracts/http/support.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from services.gateway.router import (
    PROXY_ERRORS,
    AdminKey,
    ReadKey,
    WriteKey,
    body_json,
    canonical_id,
    forward,
    forward_for_customer,
)
from services.gateway.service import segment_path
from shared.contracts.http.support import (
    ArticleIn,
    ArticleOut,
    CatalogIn,
    CatalogOut,
    CustomerSupportOut,
    FeedbackIn,
    SuggestionsOut,
    TicketDetailOut,
    TicketOut,
    TicketsOut,
    TicketStatusIn,
    TriageIn,
    TriageOut,
)

router = APIRouter(prefix="/v1/support", tags=["support"], responses=PROXY_ERRORS)

ResourceId = Annotated[str, Path(min_length=1, max_length=200)]
SERVICE = "support"


@router.get("/intents", response_model=CatalogOut)
async def get_intents(request: Request, _key: ReadKey) -> Response:
    """The company's intent catalog, the model version fitted on it and its abstention thresholds."""
    return await forward(request, SERVICE, "GET", "/intents")


@router.put("/intents", response_model=CatalogOut)
async def put_intents(request: Request, body: CatalogIn, _key: AdminKey) -> Response:
    """Replace the intent catalog (`{"intents": [{"name", "description", "examples": [{"text", "language"}]}]}`);
    triage uses it when this answers."""
    return await forward(request, SERVICE, "PUT", "/intents", json_body=body_json(body))


@router.get("/articles", response_model=list[ArticleOut])
async def list_articles(request: Request, _key: ReadKey) -> Response:
    """Every knowledge-base article."""
    return await forward(request, SERVICE, "GET", "/articles")


@router.get("/articles/{article_id}", response_model=ArticleOut)
async def get_article(request: Request, article_id: ResourceId, _key: ReadKey) -> Response:
    """One knowledge-base article."""
    return await forward(request, SERVICE, "GET", f"/articles/{segment_path(article_id)}")


@router.put("/articles/{article_id}", response_model=ArticleOut)
async def put_article(request: Request, article_id: ResourceId, body: ArticleIn, _key: AdminKey) -> Response:
    """Create or replace an article (`title`, `body`, `language`, `intents`, optional `reply` template)."""
    return await forward(
        request, SERVICE, "PUT", f"/articles/{segment_path(article_id)}", json_body=body_json(body)
    )


@router.delete("/articles/{article_id}", status_code=204)
async def delete_article(request: Request, article_id: ResourceId, _key: AdminKey) -> Response:
    """Delete an article."""
    return await forward(request, SERVICE, "DELETE", f"/articles/{segment_path(article_id)}")


@router.get("/tickets", response_model=TicketsOut)
async def list_tickets(
    request: Request,
    _key: ReadKey,
    queue: Annotated[str | None, Query(max_length=100)] = None,
    status: Literal["open", "pending", "resolved"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """The support inbox: tickets, newest first, by queue and status."""
    params = {k: v for k, v in {"queue": queue, "status": status, "limit": limit}.items() if v is not None}
    return await forward(request, SERVICE, "GET", "/tickets", params=params)


@router.get("/tickets/{ticket_id}", response_model=TicketDetailOut)
async def get_ticket(request: Request, ticket_id: ResourceId, _key: ReadKey) -> Response:
    """A ticket with its messages and their triage."""
    return await forward(request, SERVICE, "GET", f"/tickets/{segment_path(ticket_id)}")


@router.patch("/tickets/{ticket_id}", response_model=TicketOut)
async def set_ticket_status(
    request: Request, ticket_id: ResourceId, body: TicketStatusIn, _key: WriteKey
) -> Response:
    """Move a ticket to `open`, `pending` or `resolved` (`{"status": ...}`)."""
    return await forward(
        request, SERVICE, "PATCH", f"/tickets/{segment_path(ticket_id)}", json_body=body_json(body)
    )


@router.get("/tickets/{ticket_id}/suggestions", response_model=SuggestionsOut)
async def suggestions(
    request: Request,
    ticket_id: ResourceId,
    _key: ReadKey,
    recommendation: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Reply suggestions for the ticket's last message, each with its article and a draft in the customer's context."""
    params = {"recommendation": recommendation} if recommendation else None
    return await forward(
        request, SERVICE, "GET", f"/tickets/{segment_path(ticket_id)}/suggestions", params=params
    )


@router.post("/tickets/{ticket_id}/suggestions/{article_id}/feedback")
async def feedback(
    request: Request, ticket_id: ResourceId, article_id: ResourceId, body: FeedbackIn, _key: WriteKey
) -> Response:
    """What the agent did with a suggestion (`{"action": "sent" | "edited" | "rejected"}`); it ranks future ones."""
    path = f"/tickets/{segment_path(ticket_id)}/suggestions/{segment_path(article_id)}/feedback"
    return await forward(request, SERVICE, "POST", path, json_body=body_json(body))


@router.post("/triage", response_model=TriageOut)
async def triage(request: Request, body: TriageIn, _key: ReadKey) -> Response:
    """Triage a text without storing it: language, intent (or `unknown`), entities, urgency, queue, escalation
    (with the named customer's context: their churn band and value)."""
    if body.customer_id is not None:
        body = body.model_copy(update={"customer_id": await canonical_id(request, body.customer_id)})
    return await forward(request, SERVICE, "POST", "/triage", json_body=body_json(body))


@router.get("/customers/{customer_id}", response_model=CustomerSupportOut)
async def customer_support(request: Request, customer_id: ResourceId, _key: ReadKey) -> Response:
    """A customer's support summary: open tickets, last intent, escalation."""
    return await forward_for_customer(request, customer_id, SERVICE, "/customers/{id}/support")
