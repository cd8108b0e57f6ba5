"""The fleet's event contract: CloudEvents envelope, versioned payloads, topics."""

from shared.contracts.envelope import CloudEvent, new_event_id, stable_event_id, utcnow
from shared.contracts.registry import (
    EVENT_TYPES,
    INTERACTION_TYPES,
    TOPICS,
    EventTypeName,
    Topic,
    dead_letter_topic,
    payload_model,
    topic_for,
)

__all__ = [
    "EVENT_TYPES",
    "INTERACTION_TYPES",
    "TOPICS",
    "CloudEvent",
    "EventTypeName",
    "Topic",
    "dead_letter_topic",
    "new_event_id",
    "payload_model",
    "stable_event_id",
    "topic_for",
    "utcnow",
]
