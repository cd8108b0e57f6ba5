"""Request and response models of the gateway's own routes (proxied routes pass the services' bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from services.gateway.examples import C360_EXAMPLE
from shared.contracts.events import CustomerRef
from shared.contracts.http.churn import ChurnScore, NextBestAction
from shared.contracts.http.churn import ModelInfo as ChurnModelInfo
from shared.contracts.http.profile import Clv, CustomerProfile
from shared.contracts.http.recsys import ModelsOut, RecommendationsOut
from shared.contracts.http.sentiment import CustomerSentiment, ModelsResponse

# -- ingest ------------------------------------------------------------------------------------


class SimpleEvent(BaseModel):
    """The simple form: a short or full type name and the payload fields next to it."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "purchase",
                    "customer": {"email": "ada@example.com"},
                    "order_id": "o-1001",
                    "amount": 42.5,
                    "currency": "EUR",
                    "items": [{"item_id": "sku-1", "quantity": 1, "price": 42.5}],
                }
            ]
        },
    )

    type: str = Field(min_length=1, examples=["purchase", "crm.review.v1"])
    customer: CustomerRef | None = Field(default=None, description="Required by every interaction type.")
    id: str | None = Field(default=None, description="Event id; retries with the same id are applied once.")
    time: datetime | None = None
    source: str | None = None


class ItemErrorOut(BaseModel):
    index: int = Field(description="Position of the refused event in the request.")
    error: str
    detail: Any


class IngestResponse(BaseModel):
    """Events acknowledged by the broker (``acks=all``) and the ones refused, by position."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"accepted": 1, "ids": ["8c6f0c0e-..."], "errors": []}]}
    )

    accepted: int
    ids: list[str]
    errors: list[ItemErrorOut] = Field(default_factory=list)


# -- customer 360 ------------------------------------------------------------------------------


class Customer360(BaseModel):
    """Everything the fleet knows about a customer, each part as its owning service answered it. A part is
    null when its service did not answer (it is then named in ``degraded``) or has nothing on the customer."""

    model_config = ConfigDict(json_schema_extra={"examples": [C360_EXAMPLE]})

    customer_id: str = Field(description="The canonical id (also when asked by a merged-away or source id).")
    profile: CustomerProfile | None = Field(description="Identities, traits, consent, aggregates, RFM, CLV.")
    segments: list[str] | None = Field(description="Names of the segments the customer is in (profile).")
    clv: Clv | None = Field(description="Customer lifetime value (profile's BG/NBD + Gamma-Gamma).")
    sentiment: CustomerSentiment | None = Field(
        description="The customer's scored texts (sentiment service)."
    )
    recommendations: RecommendationsOut | None = Field(description="Top items with their reasons (recsys).")
    churn: ChurnScore | None = Field(description="Churn probability, band, reasons, trend (churn service).")
    next_best_action: NextBestAction | None = Field(description="The churn service's suggested action.")
    degraded: list[str] = Field(default_factory=list, description="Services that did not answer in time.")


class FleetModels(BaseModel):
    """The models each service serves, with their offline metrics and, for the recommender, click-through
    per version; a part is null (and named in ``degraded``) when its service did not answer."""

    recsys: ModelsOut | None = Field(description="Versions with offline metrics and click-through.")
    sentiment: ModelsResponse | None = Field(description="English and Chinese models, held-out accuracy.")
    churn: ChurnModelInfo | None = Field(description="The churn model in service and its metrics.")
    profile: dict[str, Any] | None = Field(description="The CLV and RFM-cluster models on the profiles.")
    degraded: list[str] = Field(default_factory=list)


# -- admin -------------------------------------------------------------------------------------


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["shop backend"])
    scopes: list[str] = Field(min_length=1, examples=[["events:write", "customers:read"]])
    rate_limit_per_s: float | None = Field(
        default=None, gt=0, le=1_000_000, description="This key's limit; default: the gateway's setting."
    )


class ApiKeyOut(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    rate_limit_per_s: float | None
    active: bool
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The API key. Shown this once; only its hash is stored.")


# -- webhooks ----------------------------------------------------------------------------------


class WebhookCreate(BaseModel):
    url: AnyHttpUrl = Field(examples=["https://hooks.example.com/crm"])
    event_types: list[str] = Field(
        min_length=1, examples=[["churn_risk_changed", "crm.segment_membership_changed.v1"]]
    )
    description: str | None = Field(default=None, max_length=500)
    purpose: Literal["operational", "marketing"] = Field(
        default="operational",
        description="marketing: never sent an event about a customer whose marketing consent is withdrawn "
        "(the delivery is logged as skipped, with the reason).",
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str | None
    purpose: Literal["operational", "marketing"]
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="HMAC-SHA256 key: X-CRM-Signature is "
        "sha256=hex(hmac(secret, f'{X-CRM-Timestamp}.{body}')). Shown this once."
    )


class WebhookDeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: str = Field(
        description="pending, delivered, failed (after the last retry) or skipped (never sent: a marketing "
        "subscription and a customer who may not be marketed to; last_error says why)."
    )
    attempts: int
    last_status_code: int | None
    last_error: str | None = Field(
        description="The last attempt's error, or why a skipped delivery was not sent.",
        examples=["marketing consent withdrawn on 2026-11-02"],
    )
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
