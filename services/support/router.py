"""HTTP routes of the support service: parse, call the service off the event loop, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from services.support import repository
from services.support.ml.knowledge import Article
from services.support.models import ArticleRow, MessageRow, TicketRow
from services.support.schemas import (
    ArticleIn,
    ArticleOut,
    CatalogIn,
    CatalogOut,
    CustomerSupportOut,
    EntityOut,
    FeedbackIn,
    IntentExample,
    IntentIn,
    MessageOut,
    SuggestionOut,
    SuggestionsOut,
    TicketDetailOut,
    TicketOut,
    TicketsOut,
    TicketStatusIn,
    TriageIn,
    TriageOut,
)
from services.support.service import SupportService
from services.support.settings import RoutingRule
from shared.runtime import request_session

router = APIRouter()

Identifier = Annotated[str, Path(min_length=1, max_length=200)]
SessionDep = Annotated[Session, Depends(request_session)]


def get_service(request: Request) -> SupportService:
    service: SupportService = request.app.state.support_service
    return service


ServiceDep = Annotated[SupportService, Depends(get_service)]


def _catalog_out(service: SupportService, session: Session) -> CatalogOut:
    rows = service.intents(session)
    model = service._model
    return CatalogOut(
        intents=[
            IntentIn(
                name=r.name,
                description=r.description,
                examples=[IntentExample(text=e["text"], language=e.get("language")) for e in r.examples],
            )
            for r in rows
        ],
        model_version=model.version if model else None,
        thresholds=dict(model.classifier.thresholds) if model else {},
    )


def _article_out(row: ArticleRow) -> ArticleOut:
    return ArticleOut(
        id=row.id,
        title=row.title,
        body=row.body,
        reply=row.reply,
        language=row.language,
        intents=list(row.intents),
        updated_at=row.updated_at,
    )


def _ticket_fields(row: TicketRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "channel": row.channel,
        "status": row.status,
        "opened_at": row.opened_at,
        "updated_at": row.updated_at,
        "first_response_at": row.first_response_at,
        "reopened": row.reopened or 0,
        "intent": row.intent,
        "confidence": row.confidence,
        "urgency": row.urgency,
        "queue": row.queue,
        "escalated": bool(row.escalated),
        "escalation_reasons": list(row.escalation_reasons or []),
    }


def _message_out(row: MessageRow) -> MessageOut:
    return MessageOut(
        event_id=row.event_id,
        text=row.text,
        language=row.language,
        intent=row.intent,
        top_intent=row.top_intent,
        confidence=row.confidence,
        entities=[EntityOut(**e) for e in row.entities],
        urgency=row.urgency,
        queue=row.queue,
        escalated=bool(row.escalated),
        escalation_reasons=list(row.escalation_reasons or []),
        received_at=row.received_at,
    )


@router.get("/intents", tags=["intents"])
def get_intents(service: ServiceDep, session: SessionDep) -> CatalogOut:
    """The intent catalog, the model version fitted on it and its abstention thresholds."""
    return _catalog_out(service, session)


@router.put("/intents", tags=["intents"])
def put_intents(body: CatalogIn, service: ServiceDep, session: SessionDep) -> CatalogOut:
    """Replace the intent catalog; the answer comes once a model fitted on it serves."""
    service.replace_catalog(session, [i.model_dump() for i in body.intents])
    return _catalog_out(service, session)


@router.get("/articles", tags=["articles"])
def list_articles(service: ServiceDep, session: SessionDep) -> list[ArticleOut]:
    """Every knowledge-base article."""
    return [_article_out(r) for r in service.articles(session)]


@router.get("/articles/{article_id}", tags=["articles"])
def get_article(article_id: Identifier, service: ServiceDep, session: SessionDep) -> ArticleOut:
    """One article."""
    return _article_out(service.article(session, article_id))


@router.put("/articles/{article_id}", tags=["articles"])
def put_article(
    article_id: Identifier, body: ArticleIn, service: ServiceDep, session: SessionDep
) -> ArticleOut:
    """Create or replace an article; it is searchable when this answers."""
    article = Article(article_id, body.title, body.body, body.language, tuple(body.intents), body.reply)
    return _article_out(service.save_article(session, article))


@router.delete("/articles/{article_id}", tags=["articles"], status_code=204)
def delete_article(article_id: Identifier, service: ServiceDep, session: SessionDep) -> Response:
    """Delete an article."""
    service.delete_article(session, article_id)
    return Response(status_code=204)


@router.post("/triage", tags=["triage"])
async def triage(body: TriageIn, service: ServiceDep, request: Request) -> TriageOut:
    """Triage a text without storing it (language, intent, entities, urgency, queue, escalation)."""

    def run() -> TriageOut:
        factory = request.app.state.runtime.session_factory
        with factory() as session:
            context = service.context(session, body.customer_id)
        result = service.triage_texts([body.text], [context], [body.language])[0]
        return TriageOut(
            language=result.language,
            intent=result.prediction.intent,
            top_intent=result.prediction.top_intent,
            confidence=result.prediction.confidence,
            alternatives=result.prediction.alternatives,
            entities=[EntityOut(kind=e.kind, value=e.value, text=e.text) for e in result.entities],
            urgency=result.decision.urgency,
            queue=result.decision.queue,
            escalated=result.decision.escalated,
            escalation_reasons=result.decision.escalation_reasons,
            model_version=result.model_version,
        )

    return await run_in_threadpool(run)


@router.get("/routing/rules", tags=["triage"])
def routing_rules(service: ServiceDep) -> list[RoutingRule]:
    """The routing rules in order (first match wins; `CRM_SUPPORT_ROUTING_RULES`)."""
    return list(service.settings.routing_rules)


@router.get("/tickets", tags=["tickets"])
def list_tickets(
    service: ServiceDep,
    session: SessionDep,
    queue: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(pattern="^(open|pending|resolved)$")] = None,
    customer_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TicketsOut:
    """Tickets, newest first, by queue, status or customer."""

    rows = repository.tickets(session, queue=queue, status=status, customer_id=customer_id, limit=limit)
    return TicketsOut(tickets=[TicketOut(**_ticket_fields(r)) for r in rows])


@router.get("/tickets/{ticket_id}", tags=["tickets"])
def get_ticket(ticket_id: Identifier, service: ServiceDep, session: SessionDep) -> TicketDetailOut:
    """A ticket with its messages and their triage."""

    row = service.ticket(session, ticket_id)
    return TicketDetailOut(
        **_ticket_fields(row), messages=[_message_out(m) for m in repository.messages(session, ticket_id)]
    )


@router.patch("/tickets/{ticket_id}", tags=["tickets"])
def set_ticket_status(
    ticket_id: Identifier, body: TicketStatusIn, service: ServiceDep, session: SessionDep
) -> TicketOut:
    """Move a ticket to open, pending or resolved."""
    return TicketOut(**_ticket_fields(service.set_status(session, ticket_id, body.status)))


@router.get("/tickets/{ticket_id}/suggestions", tags=["suggestions"])
async def suggestions(
    ticket_id: Identifier,
    service: ServiceDep,
    request: Request,
    recommendation: Annotated[str | None, Query(max_length=500)] = None,
    k: Annotated[int | None, Query(ge=1, le=20)] = None,
) -> SuggestionsOut:
    """Reply suggestions for the ticket's last message: the article each comes from and a draft."""

    def run() -> SuggestionsOut:
        with request.app.state.runtime.session_factory() as session:
            ticket, message, found = service.suggestions(session, ticket_id, recommendation, k)
        return SuggestionsOut(
            ticket_id=ticket.id,
            message_event_id=message.event_id if message else None,
            intent=message.intent if message else None,
            suggestions=[
                SuggestionOut(
                    article_id=s.article.id,
                    title=s.article.title,
                    language=s.article.language,
                    intents=list(s.article.intents),
                    score=s.score,
                    draft=s.draft,
                )
                for s in found
            ],
        )

    return await run_in_threadpool(run)


@router.post("/tickets/{ticket_id}/suggestions/{article_id}/feedback", tags=["suggestions"])
def feedback(
    ticket_id: Identifier, article_id: Identifier, body: FeedbackIn, service: ServiceDep, session: SessionDep
) -> TicketOut:
    """Record what the agent did with a suggestion (sent / edited / rejected); it ranks future ones."""
    return TicketOut(**_ticket_fields(service.record_feedback(session, ticket_id, article_id, body.action)))


@router.get("/customers/{customer_id}/support", tags=["tickets"])
def customer_support(customer_id: Identifier, service: ServiceDep, session: SessionDep) -> CustomerSupportOut:
    """A customer's support summary for the 360: open tickets, last intent, escalation."""
    return CustomerSupportOut(**service.customer_summary(session, customer_id))
