"""Kafka handlers of the churn service: thin, they call :class:`ChurnService`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from services.churn.service import ChurnService
from services.churn.settings import ChurnSettings
from shared.contracts import INTERACTION_TYPES, EventTypeName, Topic
from shared.kafka import EventHandler, InboundEvent

EVENT_TYPES: frozenset[str] = INTERACTION_TYPES | {
    EventTypeName.SENTIMENT_SCORED,
    EventTypeName.CUSTOMER_ERASED,
    EventTypeName.CUSTOMER_MERGED,
    EventTypeName.SEGMENT_MEMBERSHIP_CHANGED,
    EventTypeName.NEXT_BEST_ACTION_REACTION,
    EventTypeName.SUPPORT_TRIAGED,
}


def topics(settings: ChurnSettings) -> list[str]:
    """Everything the churn consumer group reads; one group so erase/merge stay ordered with activity."""
    names = (
        Topic.INTERACTIONS_RESOLVED,
        Topic.SENTIMENT_SCORED,
        Topic.CUSTOMER_ERASED,
        Topic.CUSTOMER_MERGED,
        Topic.SEGMENT_MEMBERSHIP_CHANGED,
        Topic.ACTION_REACTION,
        Topic.SUPPORT_TRIAGED,
    )
    return [settings.topic(t) for t in names]


def make_handler(service: ChurnService) -> EventHandler:
    def handle(events: Sequence[InboundEvent], session: Session) -> None:
        service.apply_events(events, session)

    return handle
