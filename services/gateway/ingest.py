"""Event ingest: turn what clients send (CloudEvents or the simple JSON form) into validated CloudEvents
serialised once, ready for the producer (``services.gateway.producer``), which answers only once the
broker has acknowledged every one.

Each event is validated in one pass (envelope and payload together, by pydantic-core) against a model
made per accepted type, and its envelope is serialised once into the record's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError, create_model
from pydantic_core import to_json

from shared.contracts import (
    EVENT_TYPES,
    INTERACTION_TYPES,
    CloudEvent,
    EventTypeName,
    new_event_id,
    stable_event_id,
    topic_for,
    utcnow,
)
from shared.contracts.events import Interaction

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


@lru_cache(maxsize=1)
def typed_envelopes() -> dict[str, type[CloudEvent]]:
    """Per client event type, a CloudEvent whose ``data`` is that type's payload model."""
    return {
        event_type: create_model(
            f"{EVENT_TYPES[event_type].payload.__name__}Ingest",
            __base__=CloudEvent,
            type=(Literal[event_type], ...),  # type: ignore[arg-type]
            data=(EVENT_TYPES[event_type].payload, ...),
        )
        for event_type in sorted(CLIENT_EVENT_TYPES)
    }


class EventIds:
    """Ids for events that come without one. One UUIDv7 per request (``new_event_id``: time-ordered, like
    every id the fleet makes, which keeps the consumers' ledgers fast) gives the first 80 bits; the last
    48 are its random bits xor the event's position. Unique for any batch below 2**48 events, at a
    fraction of the cost of one UUIDv7 per event."""

    __slots__ = ("_low", "_prefix")

    def __init__(self) -> None:
        first = new_event_id()
        self._prefix = first[:24]
        self._low = int(first[24:], 16)

    def __call__(self, index: int) -> str:
        return f"{self._prefix}{self._low ^ index:012x}"


@dataclass(frozen=True, slots=True)
class ItemError:
    index: int
    error: str
    detail: Any


class ParsedEvent(NamedTuple):
    position: int
    """Where the event was in the request."""
    id: str
    type: str
    topic: str
    key: str
    value: bytes
    """The CloudEvent as JSON, exactly as it goes on the topic."""


@dataclass
class ParsedBatch:
    events: list[ParsedEvent] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)

    def records(self) -> list[tuple[str, bytes, bytes]]:
        return [(e.topic, e.value, e.key.encode()) for e in self.events]


def _short(errors: list[Any], strip: int) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err["loc"][strip:]], "msg": err["msg"], "type": err["type"]}
        for err in errors[:10]
    ]


def _invalid(index: int, exc: ValidationError) -> ItemError:
    errors = exc.errors()
    if all(err["loc"] and err["loc"][0] == "data" for err in errors):
        return ItemError(index, "InvalidPayload", _short(errors, 1))
    return ItemError(index, "InvalidEnvelope", _short(errors, 0))


def partition_key(event: CloudEvent) -> str:
    """Interactions are keyed by the customer's most stable identifier, the fleet's events by customer id."""
    payload = event.data
    if isinstance(payload, Interaction):
        return payload.customer.partition_key()
    customer_id = getattr(payload, "customer_id", None)
    return str(customer_id or event.subject or event.id)


@lru_cache(maxsize=1)
def _accepted() -> dict[str, tuple[type[CloudEvent], str]]:
    """Per client event type, its typed envelope model and its topic."""
    return {t: (model, topic_for(t).value) for t, model in typed_envelopes().items()}


def parse_item(
    raw: Any,
    index: int,
    *,
    source: str,
    id_seed: str | None,
    new_id: EventIds | None = None,
    received: str | None = None,
) -> ParsedEvent | ItemError:
    """Validate one item: a CloudEvent (has ``specversion``) or ``{"type": "purchase", ...payload}``.

    The record is the envelope as received (plus the ``id``, ``source`` and ``time`` the gateway fills
    in), serialised once; it has just been validated, and consumers validate it again on their side."""
    if not isinstance(raw, dict):
        return ItemError(index, "InvalidEvent", "an event must be a JSON object")
    name = raw.get("type")
    if "specversion" in raw:
        if not isinstance(name, str) or not name:
            return ItemError(
                index, "InvalidEnvelope", [{"loc": ["type"], "msg": "Field required", "type": "missing"}]
            )
        event_type = name
        envelope = raw
    else:
        if not isinstance(name, str) or not name:
            return ItemError(
                index, "InvalidEvent", '`type` is required, e.g. "purchase" or "crm.purchase.v1"'
            )
        resolved = resolve_type(name)
        if resolved is None:
            return ItemError(index, "UnknownEventType", f"unknown event type {name!r}")
        event_type = resolved
        envelope = {"specversion": "1.0"}
        data = {}
        for k, v in raw.items():
            if k in ENVELOPE_FIELDS:
                envelope[k] = v
            elif k != "type":
                data[k] = v
        envelope["type"] = resolved
        envelope["data"] = data
        if "source" not in envelope:
            envelope["source"] = source
        if "id" not in envelope:
            if id_seed:
                envelope["id"] = stable_event_id(id_seed, index)
            else:
                envelope["id"] = new_id(index) if new_id is not None else new_event_id()
    accepted = _accepted().get(event_type)
    if accepted is None:
        if event_type in EVENT_TYPES:
            return ItemError(
                index, "EventTypeNotAccepted", f"{event_type} is produced by the fleet, not by clients"
            )
        return ItemError(index, "UnknownEventType", f"unknown event type {event_type!r}")
    model, topic = accepted
    if "time" not in envelope:
        envelope["time"] = received or utcnow().isoformat()
    try:
        event = model.model_validate(envelope)
    except ValidationError as exc:
        return _invalid(index, exc)
    return ParsedEvent(index, event.id, event_type, topic, partition_key(event), to_json(envelope))


def parse_batch(items: Sequence[Any], *, source: str, id_seed: str | None) -> ParsedBatch:
    batch = ParsedBatch()
    new_id = EventIds()
    received = utcnow().isoformat()  # the time of events that come without one
    for index, raw in enumerate(items):
        result = parse_item(raw, index, source=source, id_seed=id_seed, new_id=new_id, received=received)
        if isinstance(result, ItemError):
            batch.errors.append(result)
        else:
            batch.events.append(result)
    return batch
