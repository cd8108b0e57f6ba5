"""What the support service answers (and takes) over HTTP: the intent catalog, knowledge-base articles,
triage, tickets and reply suggestions.

The service answers with these models and the gateway reads with them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints


def _utc(value: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; every time the service stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[\w.-]+$")
]
ExampleText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Language = Annotated[str, StringConstraints(max_length=8)]


class IntentExample(BaseModel):
    text: ExampleText
    language: Language | None = Field(default=None, description="en or zh; detected when missing.")


class IntentIn(BaseModel):
    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    examples: list[IntentExample] = Field(min_length=1, max_length=500)


class CatalogIn(BaseModel):
    intents: list[IntentIn] = Field(min_length=2, max_length=500)


class CatalogOut(BaseModel):
    intents: list[IntentIn]
    model_version: str | None
    thresholds: dict[str, float] = Field(description="Abstention threshold per embedding space.")


class ArticleIn(BaseModel):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    body: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    reply: Annotated[str, StringConstraints(max_length=20_000)] | None = Field(
        default=None,
        description="Draft template; may use {name}, {order_line}, {recommendation}. Default: the body.",
    )
    language: Literal["en", "zh"] = "en"
    intents: list[Name] = Field(default_factory=list, max_length=50)


class ArticleOut(ArticleIn):
    id: str
    updated_at: UtcDatetime


class EntityOut(BaseModel):
    kind: str
    value: str
    text: str


class TriageIn(BaseModel):
    text: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    language: Language | None = None
    customer_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class TriageOut(BaseModel):
    language: str
    intent: str
    top_intent: str
    confidence: float
    alternatives: list[tuple[str, float]]
    entities: list[EntityOut]
    urgency: str
    queue: str
    escalated: bool
    escalation_reasons: list[str]
    model_version: str


class MessageOut(BaseModel):
    event_id: str
    text: str
    language: str
    intent: str
    top_intent: str
    confidence: float
    entities: list[EntityOut]
    urgency: str
    queue: str
    escalated: bool
    escalation_reasons: list[str]
    received_at: UtcDatetime


class TicketOut(BaseModel):
    id: str
    customer_id: str
    channel: str
    status: Literal["open", "pending", "resolved"]
    opened_at: UtcDatetime
    updated_at: UtcDatetime
    first_response_at: UtcDatetime | None
    reopened: int
    intent: str
    confidence: float
    urgency: str
    queue: str
    escalated: bool
    escalation_reasons: list[str]


class TicketDetailOut(TicketOut):
    messages: list[MessageOut]


class TicketsOut(BaseModel):
    tickets: list[TicketOut]


class TicketStatusIn(BaseModel):
    status: Literal["open", "pending", "resolved"]


class SuggestionOut(BaseModel):
    article_id: str
    title: str
    language: str
    intents: list[str]
    score: float
    draft: str


class SuggestionsOut(BaseModel):
    ticket_id: str
    message_event_id: str | None
    intent: str | None
    suggestions: list[SuggestionOut]


class FeedbackIn(BaseModel):
    action: Literal["sent", "edited", "rejected"]


class CustomerSupportOut(BaseModel):
    customer_id: str
    open_tickets: int
    tickets: int
    last_intent: str | None
    last_ticket_id: str | None
    escalated: bool
