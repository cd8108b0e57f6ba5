"""Event ingest: turn what clients send (CloudEvents or the simple JSON form) into validated CloudEvents,
and publish them with ``acks=all``, answering only once the broker has acknowledged every one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.contracts import (
    EVENT_TYPES,
    INTERACTION_TYPES,
    CloudEvent,
    EventTypeName,
    payload_model,
    stable_event_id,
    topic_for,
)
from shared.contracts.events import Interaction
from shared.kafka import EventPublisher

# Types clients may send: interactions and reactions. The fleet's own outputs (churn risk changed,
# customer erased, ...) are produced by the services only.
CLIENT_EVENT_TYPES: frozenset[str] = INTERACTION_TYPES | {
    EventTypeName.RECOMMENDATION_REACTION.value,
    EventTypeName.NEXT_BEST_ACTION_REACTION.value,
}
ENVELOPE_FIELDS = ("id", "source", "time", "subject", "dataschema")


def resolve_type(name: str) -> str | None:
    """``purchase`` -> ``crm.purchase.v1``; full type names pass through."""
    if name in EVENT_TYPES:
        return name
    full = f"crm.{name}.v1"
    return full if full in EVENT_TYPES else None


@dataclass(frozen=True, slots=True)
class ItemError:
    index: int
    error: str
    detail: Any


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    index: int
    topic: str
    key: str
    event: CloudEvent


@dataclass
class ParsedBatch:
    events: list[ParsedEvent] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)


def _short(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()[:10]
    ]


def partition_key(payload: BaseModel, event: CloudEvent) -> str:
    """Interactions are keyed by the customer's most stable identifier, the fleet's events by customer id."""
    if isinstance(payload, Interaction):
        return payload.customer.partition_key()
    customer_id = getattr(payload, "customer_id", None)
    return str(customer_id or event.subject or event.id)


def parse_item(raw: Any, index: int, *, source: str, id_seed: str | None) -> ParsedEvent | ItemError:
    """Validate one item: a CloudEvent (has ``specversion``) or ``{"type": "purchase", ...payload}``."""
    if not isinstance(raw, dict):
        return ItemError(index, "InvalidEvent", "an event must be a JSON object")
    if "specversion" in raw:
        try:
            event = CloudEvent.model_validate(raw)
        except ValidationError as exc:
            return ItemError(index, "InvalidEnvelope", _short(exc))
        event_type = event.type
    else:
        name = raw.get("type")
        if not isinstance(name, str) or not name:
            return ItemError(
                index, "InvalidEvent", '`type` is required, e.g. "purchase" or "crm.purchase.v1"'
            )
        resolved = resolve_type(name)
        if resolved is None:
            return ItemError(index, "UnknownEventType", f"unknown event type {name!r}")
        data = {k: v for k, v in raw.items() if k != "type" and k not in ENVELOPE_FIELDS}
        envelope: dict[str, Any] = {k: raw[k] for k in ENVELOPE_FIELDS if k in raw}
        envelope.setdefault("source", source)
        if "id" not in envelope:
            envelope["id"] = stable_event_id(id_seed, index) if id_seed else str(uuid.uuid4())
        try:
            event = CloudEvent.model_validate({**envelope, "type": resolved, "data": data})
        except ValidationError as exc:
            return ItemError(index, "InvalidEnvelope", _short(exc))
        event_type = resolved
    model = payload_model(event_type)
    if model is None:
        return ItemError(index, "UnknownEventType", f"unknown event type {event_type!r}")
    if event_type not in CLIENT_EVENT_TYPES:
        return ItemError(
            index, "EventTypeNotAccepted", f"{event_type} is produced by the fleet, not by clients"
        )
    try:
        payload = model.model_validate(event.data)
    except ValidationError as exc:
        return ItemError(index, "InvalidPayload", _short(exc))
    return ParsedEvent(index, topic_for(event_type).value, partition_key(payload, event), event)


def parse_batch(items: Sequence[Any], *, source: str, id_seed: str | None) -> ParsedBatch:
    batch = ParsedBatch()
    for index, raw in enumerate(items):
        result = parse_item(raw, index, source=source, id_seed=id_seed)
        if isinstance(result, ItemError):
            batch.errors.append(result)
        else:
            batch.events.append(result)
    return batch


def publish_batch(publisher: EventPublisher, events: Sequence[ParsedEvent], timeout_s: float) -> None:
    """Send every event and wait for the broker's acks (raises on timeout or broker error)."""
    deadline = time.monotonic() + timeout_s
    futures = [publisher.publish(e.topic, e.event, e.key) for e in events]
    for future in futures:
        future.get(timeout=max(0.001, deadline - time.monotonic()))
