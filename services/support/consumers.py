"""Kafka handlers of the support service: thin, the logic is in service.py.

Triaged events are published (and acknowledged) before the transaction that records the source ids
commits; a re-delivered message yields the same event id (derived from the source id), which consumers
of ``crm.support.triaged.v1`` drop as a duplicate: exactly once in effect."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.support.service import SupportService
from shared.contracts import EventTypeName, Topic
from shared.contracts import events as ev
from shared.contracts.catalog import ItemUpdated
from shared.db import forget_erased_data
from shared.kafka import EventHandler, EventPublisher, InboundEvent
from shared.logging import get_logger

log = get_logger(__name__)

GROUP = "crm-support"
TOPICS = (
    Topic.INTERACTIONS_RESOLVED,
    Topic.CUSTOMER_ERASED,
    Topic.CUSTOMER_MERGED,
    Topic.CHURN_RISK_CHANGED,
    Topic.SENTIMENT_SCORED,
    Topic.ITEM_UPDATED,
)
EVENT_TYPES = frozenset(
    {
        EventTypeName.SUPPORT_MESSAGE,
        EventTypeName.IDENTIFY,
        EventTypeName.PURCHASE,
        EventTypeName.CUSTOMER_ERASED,
        EventTypeName.CUSTOMER_MERGED,
        EventTypeName.CHURN_RISK_CHANGED,
        EventTypeName.SENTIMENT_SCORED,
        EventTypeName.ITEM_UPDATED,
    }
)


def make_handler(service: SupportService, publisher: EventPublisher | None) -> EventHandler:
    def handle(events: Sequence[InboundEvent], session: Session) -> None:
        pending: list[tuple[str, str, datetime, Any]] = []
        outgoing = []

        def flush_messages() -> None:
            outgoing.extend(service.handle_messages(session, pending))
            pending.clear()

        for event in events:
            payload = event.payload
            if isinstance(payload, ev.SupportMessage):
                if not event.subject:
                    log.warning("support_message_without_customer", event_id=event.id)
                    continue
                pending.append((event.id, event.subject, event.time, payload))
                continue
            # Keep order: messages before an erasure or a merge are written first.
            flush_messages()
            if isinstance(payload, ev.Identify) and event.subject:
                service.record_identify(session, event.subject, payload.traits)
            elif isinstance(payload, ev.Purchase) and event.subject:
                service.record_purchase(session, event.subject, payload.order_id, payload.amount, event.time)
            elif isinstance(payload, ev.ChurnRiskChanged):
                service.record_churn_band(session, payload.customer_id, payload.band)
            elif isinstance(payload, ev.SentimentScored):
                service.record_sentiment(session, payload.customer_id, payload.label)
            elif isinstance(payload, ItemUpdated):
                service.record_items(session, [(payload.item_id, payload.name)])
            elif isinstance(payload, ev.CustomerErased):
                removed = service.erase_customer(session, payload.customer_id)
                forget_erased_data(session)
                log.info("customer_erased", erasure_id=payload.erasure_id, tickets_removed=removed)
            elif isinstance(payload, ev.CustomerMerged):
                service.merge_customers(session, payload.survivor_id, payload.merged_id, payload.undone)
        flush_messages()
        session.flush()
        if outgoing and publisher is not None:
            publisher.publish_and_wait([(Topic.SUPPORT_TRIAGED, e, e.subject) for e in outgoing])

    return handle
