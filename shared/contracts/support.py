"""The support service's event: how one support message was triaged (intent, urgency, queue, escalation).
Churn reads it for its support signals, the profile and the gateway for the customer's timeline and 360."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from shared.contracts.events import Identifier, Payload

Short = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TriagedEntity(Payload):
    kind: Literal["order_id", "amount", "date", "email", "phone", "item_id"]
    value: Annotated[str, StringConstraints(max_length=500)]
    text: Annotated[str, StringConstraints(max_length=500)] = Field(description="The words it was read from.")


class SupportTriaged(Payload):
    """A support message after triage. ``intent`` is ``unknown`` when the confidence was under the threshold."""

    customer_id: Identifier
    ticket_id: Identifier
    source_event_id: Identifier = Field(description="The `crm.support_message.v1` event triaged.")
    channel: Annotated[str, StringConstraints(max_length=50)] | None = None
    language: Annotated[str, StringConstraints(max_length=8)]
    intent: Short = Field(examples=["cancel"])
    top_intent: Short = Field(description="The best intent even when abstaining.")
    confidence: float = Field(ge=0, le=1, description="Calibrated probability that `top_intent` is right.")
    urgency: Literal["low", "medium", "high"]
    queue: Short
    escalated: bool
    escalation_reasons: list[Short] = Field(default_factory=list, max_length=10)
    ticket_status: Literal["open", "pending", "resolved"]
    entities: list[TriagedEntity] = Field(default_factory=list, max_length=50)
    model_version: Identifier
