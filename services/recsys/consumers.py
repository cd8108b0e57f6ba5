"""Kafka handlers of the recsys service: thin, they turn events into calls on :class:`RecsysService`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from services.recsys.models import ReactionRow
from services.recsys.repository import CatalogItem, NewInteraction
from services.recsys.service import RecsysService
from shared.contracts import EventTypeName, Topic
from shared.contracts import events as ev
from shared.contracts.catalog import ItemUpdated
from shared.kafka import EventHandler, InboundEvent
from shared.logging import get_logger

log = get_logger(__name__)

GROUP = "crm-recsys"
TOPICS = (
    Topic.INTERACTIONS_RESOLVED,
    Topic.RECOMMENDATION_REACTION,
    Topic.CUSTOMER_ERASED,
    Topic.CUSTOMER_MERGED,
    Topic.ITEM_UPDATED,
)
INTERACTION_TYPES = frozenset(
    {EventTypeName.RATING, EventTypeName.PRODUCT_VIEW, EventTypeName.ADD_TO_CART, EventTypeName.PURCHASE}
)
EVENT_TYPES = INTERACTION_TYPES | {
    EventTypeName.RECOMMENDATION_REACTION,
    EventTypeName.CUSTOMER_ERASED,
    EventTypeName.CUSTOMER_MERGED,
    EventTypeName.ITEM_UPDATED,
}


def interactions_of(event: InboundEvent) -> list[NewInteraction]:
    """The (customer, item) interactions an event carries; the customer is the resolved ``subject``."""
    payload = event.payload
    customer_ref = getattr(payload, "customer", None)
    customer_id = event.subject or (customer_ref.customer_id if customer_ref is not None else None)
    if not customer_id:
        log.warning("interaction_without_customer", event_id=event.id, type=event.type)
        return []
    at = event.envelope.time

    def row(item_id: str, kind: str) -> NewInteraction:
        # Binary implicit feedback: any interaction says "interested", whatever the rating.
        return NewInteraction(event.id, customer_id, item_id, kind, 1.0, at)

    if isinstance(payload, ev.Rating):
        return [row(payload.item_id, "rating")]
    if isinstance(payload, ev.ProductView):
        return [row(payload.item_id, "product_view")]
    if isinstance(payload, ev.AddToCart):
        return [row(payload.item_id, "add_to_cart")]
    if isinstance(payload, ev.Purchase):
        return [row(line.item_id, "purchase") for line in payload.items]
    return []


def catalog_item_of(event: InboundEvent, payload: ItemUpdated) -> CatalogItem:
    return CatalogItem(
        payload.item_id,
        payload.name,
        tuple(payload.categories),
        dict(payload.attributes),
        event.time.timestamp(),
        event.id,
    )


def make_handler(service: RecsysService) -> EventHandler:
    def handle(events: Sequence[InboundEvent], session: Session) -> None:
        pending: list[NewInteraction] = []
        items: list[CatalogItem] = []
        for event in events:
            payload = event.payload
            if event.type in INTERACTION_TYPES:
                pending.extend(interactions_of(event))
                continue
            if isinstance(payload, ItemUpdated):
                items.append(catalog_item_of(event, payload))  # the catalog is independent of customers
                continue
            # Keep order: interactions before an erasure or merge are written first.
            service.record_interactions(session, pending)
            pending = []
            if isinstance(payload, ev.CustomerErased):
                service.erase_customer(session, payload.customer_id)
            elif isinstance(payload, ev.CustomerMerged):
                service.merge_customers(session, payload.survivor_id, payload.merged_id, payload.undone)
            elif isinstance(payload, ev.RecommendationReaction):
                service.record_reaction(
                    session,
                    ReactionRow(
                        event_id=event.id,
                        customer_id=payload.customer_id,
                        item_id=payload.item_id,
                        reaction=payload.reaction,
                        model_version=payload.model_version or "unknown",
                        recommendation_id=payload.recommendation_id,
                        occurred_at=event.envelope.time,
                    ),
                )
        service.record_interactions(session, pending)
        service.record_items(session, items)

    return handle
