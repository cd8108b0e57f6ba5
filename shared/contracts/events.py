"""Versioned payload models (the CloudEvent ``data``) for every event the fleet reads or writes.

Inbound interactions name the customer by any identifier in :class:`CustomerRef`. The profile service
resolves that to a canonical customer id and republishes the event on the resolved topic with
``subject`` set to it; the fleet's own outputs carry ``customer_id`` directly.
A breaking change to a payload gets a new model and type (``.v2``), never an edit in place.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.contracts.envelope import PRINTABLE
from shared.settings import get_event_rules

Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=PRINTABLE)
]
# Free text keeps tabs and line breaks; other control characters (NUL, BEL, ...) are refused.
Text = Annotated[
    str, StringConstraints(min_length=1, max_length=20_000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
TraitName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
# How deep a free-form value (an identify event's traits) may nest.
MAX_TRAIT_DEPTH = 16


def _bounded_amount(value: float) -> float:
    limit = get_event_rules().max_amount
    if not value <= limit:  # also refuses NaN
        raise ValueError(f"must be a finite number at most {limit:g} (CRM_EVENTS_MAX_AMOUNT)")
    return value


Amount = Annotated[
    float,
    Field(ge=0, allow_inf_nan=False, description="Bounded by CRM_EVENTS_MAX_AMOUNT (1e9)."),
    AfterValidator(_bounded_amount),
]


def _shallow(value: dict[str, Any]) -> dict[str, Any]:
    """Traits nest at most :data:`MAX_TRAIT_DEPTH` levels and hold finite numbers only."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_TRAIT_DEPTH:
                raise ValueError(f"traits nest deeper than {MAX_TRAIT_DEPTH} levels")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("traits hold a number that is not finite")
    return value


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerRef(Payload):
    """Who did it: at least one identifier. Known identifiers attach the event to that customer."""

    customer_id: Identifier | None = None
    anonymous_id: Identifier | None = Field(default=None, description="Device, cookie or session id.")
    email: (
        Annotated[
            str,
            StringConstraints(
                strip_whitespace=True,
                max_length=320,
                pattern=r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$",
            ),
        ]
        | None
    ) = None
    phone: (
        Annotated[
            str, StringConstraints(strip_whitespace=True, max_length=32, pattern=r"^\+?[0-9 ()\-]{4,31}$")
        ]
        | None
    ) = None
    external_ids: dict[Identifier, Identifier] = Field(
        default_factory=dict, description="Ids in other systems, by system name, e.g. {'shopify': '123'}."
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> CustomerRef:
        if not (self.customer_id or self.anonymous_id or self.email or self.phone or self.external_ids):
            raise ValueError(
                "customer needs at least one identifier (customer_id, anonymous_id, email, phone, external_ids)"
            )
        return self

    def partition_key(self) -> str:
        """The Kafka key: the most stable identifier given, so one customer's events stay in order."""
        if self.customer_id:
            return self.customer_id
        if self.anonymous_id:
            return f"anon:{self.anonymous_id}"
        if self.email:
            return f"email:{self.email.lower()}"
        if self.phone:
            return f"phone:{self.phone}"
        system, value = sorted(self.external_ids.items())[0]
        return f"ext:{system}:{value}"


class Interaction(Payload):
    """Fields every customer interaction has."""

    customer: CustomerRef
    channel: Identifier | None = Field(default=None, examples=["web", "app", "store", "email", "phone"])


class Identify(Interaction):
    """Links the given identifiers to one customer and sets traits (name, age, city, ...)."""

    traits: Annotated[dict[TraitName, Any], AfterValidator(_shallow)] = Field(default_factory=dict)


class ProductView(Interaction):
    item_id: Identifier


class AddToCart(Interaction):
    item_id: Identifier
    quantity: int = Field(default=1, ge=1, le=10_000)
    price: Amount | None = None


class PurchaseItem(Payload):
    item_id: Identifier
    quantity: int = Field(default=1, ge=1, le=100_000)
    price: Amount = Field(description="Unit price in the purchase currency.")


class Purchase(Interaction):
    order_id: Identifier
    items: list[PurchaseItem] = Field(default_factory=list, max_length=1000)
    amount: Amount = Field(description="Order total in `currency`.")
    currency: Currency = "USD"


class Rating(Interaction):
    item_id: Identifier
    rating: float = Field(ge=0, le=5)


class Review(Interaction):
    item_id: Identifier | None = None
    text: Text
    stars: int | None = Field(default=None, ge=1, le=5)
    language: Annotated[str, StringConstraints(max_length=8, pattern=PRINTABLE)] | None = None


class SupportMessage(Interaction):
    text: Text
    ticket_id: Identifier | None = None
    language: Annotated[str, StringConstraints(max_length=8, pattern=PRINTABLE)] | None = None


class ConsentChanged(Interaction):
    purpose: Literal["marketing", "analytics", "personalization", "profiling"]
    granted: bool


# --- the fleet's own outputs -------------------------------------------------------------------


class SentimentScored(Payload):
    customer_id: Identifier
    source_event_id: Identifier
    source_type: Literal["review", "support_message"]
    label: Literal["positive", "negative", "neutral"]
    score: float = Field(ge=0, le=1, description="Probability that the text is positive.")
    language: Annotated[str, StringConstraints(max_length=8)]
    model_version: Identifier


class ChurnRiskChanged(Payload):
    customer_id: Identifier
    probability: float = Field(ge=0, le=1)
    band: Literal["low", "medium", "high"]
    previous_band: Literal["low", "medium", "high"] | None = None
    reasons: list[str] = Field(default_factory=list, max_length=20)
    model_version: Identifier


class SegmentMembershipChanged(Payload):
    customer_id: Identifier
    segment_id: Identifier
    segment_name: Identifier
    joined: bool = Field(description="True when the customer entered the segment, false when they left.")


class CustomerMerged(Payload):
    merge_id: Identifier
    survivor_id: Identifier = Field(description="The customer id that remains.")
    merged_id: Identifier = Field(description="The customer id folded into the survivor.")
    undone: bool = Field(default=False, description="True when this event reverses an earlier merge.")


class CustomerErased(Payload):
    customer_id: Identifier
    erasure_id: Identifier


class RecommendationReaction(Payload):
    customer_id: Identifier
    item_id: Identifier
    reaction: Literal["impression", "click", "dismiss"]
    model_version: Identifier | None = None
    recommendation_id: Identifier | None = None


class NextBestActionReaction(Payload):
    customer_id: Identifier
    action: Identifier
    rule_id: Identifier
    reaction: Literal["accepted", "rejected", "ignored"]
