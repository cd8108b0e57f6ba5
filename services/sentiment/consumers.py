"""Kafka handlers of the sentiment service: thin, the logic is in service.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from services.sentiment import repository
from services.sentiment.service import SentimentEngine, score_events, text_event
from shared.contracts import EventTypeName, Topic
from shared.contracts.events import CustomerErased, CustomerMerged
from shared.db import forget_erased_data
from shared.kafka import EventHandler, EventPublisher, InboundEvent
from shared.logging import get_logger

log = get_logger(__name__)

TEXT_EVENT_TYPES = (EventTypeName.REVIEW.value, EventTypeName.SUPPORT_MESSAGE.value)
CUSTOMER_EVENT_TYPES = (EventTypeName.CUSTOMER_ERASED.value, EventTypeName.CUSTOMER_MERGED.value)


def make_interaction_handler(
    engine: Callable[[], SentimentEngine], publisher: EventPublisher
) -> EventHandler:
    """Reviews and support messages -> stored scores + sentiment-scored events.

    The events are published (and acknowledged) before the transaction that records the source ids
    commits; if that commit fails, the re-delivered source events produce the same event ids again, which
    every consumer of SENTIMENT_SCORED drops as duplicates: exactly once in effect."""

    def handle(events: Sequence[InboundEvent], session: Session) -> None:
        texts = [t for e in events if (t := text_event(e.id, e.type, e.subject, e.payload)) is not None]
        if len(texts) < len(events):
            log.warning("sentiment_events_without_customer", skipped=len(events) - len(texts))
        outgoing = score_events(engine(), session, texts)
        session.flush()
        publisher.publish_and_wait([(Topic.SENTIMENT_SCORED, e, e.subject) for e in outgoing])

    return handle


def handle_customer_events(events: Sequence[InboundEvent], session: Session) -> None:
    """Erasure deletes the customer's scores; merges move them to the survivor (and back on undo)."""
    for event in events:
        payload = event.payload
        if isinstance(payload, CustomerErased):
            removed = repository.erase_customer(session, payload.customer_id)
            forget_erased_data(session)
            log.info("customer_erased", erasure_id=payload.erasure_id, scores_removed=removed)
        elif isinstance(payload, CustomerMerged):
            if payload.undone:
                repository.unmerge_customers(session, payload.survivor_id, payload.merged_id)
            else:
                repository.merge_customers(session, payload.survivor_id, payload.merged_id)
