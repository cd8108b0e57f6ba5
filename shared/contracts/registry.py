"""Which event types exist, which payload model each carries, which topic it travels on, and who
produces and consumes each topic. ``docs/asyncapi.yaml`` and ``docs/schemas/`` are generated from
this module (``crm contracts export``); a test fails when they disagree."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from shared.contracts import events as ev
from shared.contracts.catalog import ItemUpdated
from shared.contracts.support import SupportTriaged


class Topic(StrEnum):
    """Kafka topics, named ``crm.<domain>.<event>.v1``. Dead letters go to ``<topic>.dlq``."""

    INTERACTIONS = "crm.interactions.received.v1"
    INTERACTIONS_RESOLVED = "crm.interactions.resolved.v1"
    SENTIMENT_SCORED = "crm.sentiment.scored.v1"
    CHURN_RISK_CHANGED = "crm.churn.risk_changed.v1"
    SEGMENT_MEMBERSHIP_CHANGED = "crm.segment.membership_changed.v1"
    CUSTOMER_MERGED = "crm.customer.merged.v1"
    CUSTOMER_ERASED = "crm.customer.erased.v1"
    RECOMMENDATION_REACTION = "crm.recommendation.reaction.v1"
    ACTION_REACTION = "crm.action.reaction.v1"
    ITEM_UPDATED = "crm.catalog.item_updated.v1"
    SUPPORT_TRIAGED = "crm.support.triaged.v1"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True)
class EventType:
    type: str
    payload: builtins.type[BaseModel]  # `type` is also a field name here
    topic: Topic
    summary: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", str(self.type))


class EventTypeName(StrEnum):
    IDENTIFY = "crm.identify.v1"
    PRODUCT_VIEW = "crm.product_view.v1"
    ADD_TO_CART = "crm.add_to_cart.v1"
    PURCHASE = "crm.purchase.v1"
    RATING = "crm.rating.v1"
    REVIEW = "crm.review.v1"
    SUPPORT_MESSAGE = "crm.support_message.v1"
    CONSENT_CHANGED = "crm.consent_changed.v1"
    SENTIMENT_SCORED = "crm.sentiment_scored.v1"
    CHURN_RISK_CHANGED = "crm.churn_risk_changed.v1"
    SEGMENT_MEMBERSHIP_CHANGED = "crm.segment_membership_changed.v1"
    CUSTOMER_MERGED = "crm.customer_merged.v1"
    CUSTOMER_ERASED = "crm.customer_erased.v1"
    RECOMMENDATION_REACTION = "crm.recommendation_reaction.v1"
    NEXT_BEST_ACTION_REACTION = "crm.next_best_action_reaction.v1"
    ITEM_UPDATED = "crm.item_updated.v1"
    SUPPORT_TRIAGED = "crm.support_triaged.v1"


T = EventTypeName
EVENT_TYPES: dict[str, EventType] = {
    str(e.type): e
    for e in (
        EventType(
            T.IDENTIFY, ev.Identify, Topic.INTERACTIONS, "Links identifiers to one customer; sets traits."
        ),
        EventType(T.PRODUCT_VIEW, ev.ProductView, Topic.INTERACTIONS, "A customer viewed an item."),
        EventType(T.ADD_TO_CART, ev.AddToCart, Topic.INTERACTIONS, "A customer put an item in the cart."),
        EventType(T.PURCHASE, ev.Purchase, Topic.INTERACTIONS, "A customer placed an order."),
        EventType(T.RATING, ev.Rating, Topic.INTERACTIONS, "A customer rated an item (0-5)."),
        EventType(T.REVIEW, ev.Review, Topic.INTERACTIONS, "A customer wrote a review."),
        EventType(T.SUPPORT_MESSAGE, ev.SupportMessage, Topic.INTERACTIONS, "A customer wrote to support."),
        EventType(
            T.CONSENT_CHANGED, ev.ConsentChanged, Topic.INTERACTIONS, "A customer gave or withdrew consent."
        ),
        EventType(
            T.SENTIMENT_SCORED,
            ev.SentimentScored,
            Topic.SENTIMENT_SCORED,
            "Sentiment of a review or support message.",
        ),
        EventType(
            T.CHURN_RISK_CHANGED,
            ev.ChurnRiskChanged,
            Topic.CHURN_RISK_CHANGED,
            "A customer's churn risk band changed.",
        ),
        EventType(
            T.SEGMENT_MEMBERSHIP_CHANGED,
            ev.SegmentMembershipChanged,
            Topic.SEGMENT_MEMBERSHIP_CHANGED,
            "A customer entered or left a segment.",
        ),
        EventType(
            T.CUSTOMER_MERGED,
            ev.CustomerMerged,
            Topic.CUSTOMER_MERGED,
            "Two customer profiles were merged (or unmerged).",
        ),
        EventType(
            T.CUSTOMER_ERASED,
            ev.CustomerErased,
            Topic.CUSTOMER_ERASED,
            "A customer was erased; every store must forget them.",
        ),
        EventType(
            T.RECOMMENDATION_REACTION,
            ev.RecommendationReaction,
            Topic.RECOMMENDATION_REACTION,
            "A customer saw, clicked or dismissed a recommendation.",
        ),
        EventType(
            T.NEXT_BEST_ACTION_REACTION,
            ev.NextBestActionReaction,
            Topic.ACTION_REACTION,
            "A customer accepted, rejected or ignored a next-best-action.",
        ),
        EventType(
            T.ITEM_UPDATED,
            ItemUpdated,
            Topic.ITEM_UPDATED,
            "An item of the catalog: its name and categories.",
        ),
        EventType(
            T.SUPPORT_TRIAGED,
            SupportTriaged,
            Topic.SUPPORT_TRIAGED,
            "A support message was triaged: intent, urgency, queue, escalation.",
        ),
    )
}

INTERACTION_TYPES: frozenset[str] = frozenset(
    t for t, e in EVENT_TYPES.items() if e.topic is Topic.INTERACTIONS
)


@dataclass(frozen=True)
class TopicInfo:
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    key: str = "customer id"


TOPICS: dict[Topic, TopicInfo] = {
    Topic.INTERACTIONS: TopicInfo(
        "Everything customers do, as sent by apps, shops and partners. Key: the most stable identifier given.",
        ("gateway", "external systems", "crm replay"),
        ("profile",),
    ),
    Topic.INTERACTIONS_RESOLVED: TopicInfo(
        "The same interactions after identity resolution: `subject` is the canonical customer id, key too.",
        ("profile",),
        ("recsys", "sentiment", "churn", "support", "gateway"),
    ),
    Topic.SENTIMENT_SCORED: TopicInfo(
        "Sentiment of every review and support message.",
        ("sentiment",),
        ("profile", "churn", "support", "gateway"),
    ),
    Topic.CHURN_RISK_CHANGED: TopicInfo(
        "Churn risk band changes.", ("churn",), ("profile", "support", "gateway")
    ),
    Topic.SEGMENT_MEMBERSHIP_CHANGED: TopicInfo(
        "Segment entries and exits.", ("profile",), ("churn", "recsys", "gateway")
    ),
    Topic.CUSTOMER_MERGED: TopicInfo(
        "Profile merges and their undo.",
        ("profile",),
        ("recsys", "sentiment", "churn", "support", "gateway"),
    ),
    Topic.CUSTOMER_ERASED: TopicInfo(
        "Right-to-erasure requests already applied by the profile service.",
        ("profile",),
        ("recsys", "sentiment", "churn", "support", "gateway"),
    ),
    Topic.RECOMMENDATION_REACTION: TopicInfo(
        "Impressions and clicks on recommendations.", ("gateway",), ("recsys", "gateway")
    ),
    Topic.ACTION_REACTION: TopicInfo("Reactions to next-best-actions.", ("gateway",), ("churn", "gateway")),
    Topic.ITEM_UPDATED: TopicInfo(
        "The item catalog: names and categories, shown wherever an item is. Key: the item id.",
        ("external systems", "crm replay"),
        ("recsys", "support"),
        key="item id",
    ),
    Topic.SUPPORT_TRIAGED: TopicInfo(
        "Every support message after triage: intent, urgency, queue, escalation, entities.",
        ("support",),
        ("churn",),
    ),
}


def payload_model(event_type: str) -> builtins.type[BaseModel] | None:
    entry = EVENT_TYPES.get(event_type)
    return entry.payload if entry else None


def topic_for(event_type: str) -> Topic:
    return EVENT_TYPES[event_type].topic


def event_types_on(topic: Topic) -> list[str]:
    """Event types a topic carries. The resolved topic carries the interaction types, re-keyed."""
    source = Topic.INTERACTIONS if topic is Topic.INTERACTIONS_RESOLVED else topic
    return sorted(t for t, e in EVENT_TYPES.items() if e.topic is source)
