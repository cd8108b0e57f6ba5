"""Kafka handlers of the profile service: thin wrappers that call the service and publish its output.

Publishing happens inside the consumer's transaction, before it commits: the handler returns only when
the broker acknowledged every resolved interaction and every segment/merge event, so a crash before the
commit re-delivers the batch (downstream consumers dedupe by event id, and our ids are deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from services.profile.service import ProfileService
from shared.contracts import INTERACTION_TYPES, EventTypeName, Topic
from shared.kafka import EventHandler, InboundEvent

INTERACTIONS_GROUP = "crm-profile"
SIGNALS_GROUP = "crm-profile-signals"
SIGNAL_TOPICS = (Topic.SENTIMENT_SCORED, Topic.CHURN_RISK_CHANGED)
SIGNAL_TYPES = frozenset({EventTypeName.SENTIMENT_SCORED, EventTypeName.CHURN_RISK_CHANGED})
PUBLISHED_TOPICS = (
    Topic.INTERACTIONS_RESOLVED,
    Topic.SEGMENT_MEMBERSHIP_CHANGED,
    Topic.CUSTOMER_MERGED,
    Topic.CUSTOMER_ERASED,
)


def interactions_handler(service: ProfileService) -> EventHandler:
    def handle(events: Sequence[InboundEvent], session: Session) -> None:
        service.publish(service.apply_interactions(events, session))

    return handle


def signals_handler(service: ProfileService) -> EventHandler:
    def handle(events: Sequence[InboundEvent], session: Session) -> None:
        service.publish(service.apply_signals(events, session))

    return handle


INTERACTION_EVENT_TYPES = INTERACTION_TYPES
