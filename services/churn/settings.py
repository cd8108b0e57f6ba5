"""Settings of the churn service (env prefix ``CRM_CHURN_``)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ChurnSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_CHURN_", extra="ignore")

    data_dir: str = Field(default="var/churn", description="SQLite file and versioned model files.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite under data_dir."
    )
    model_dir: str | None = Field(
        default=None, description="Where models/<kind>/<version>/ live; default data_dir."
    )

    band_medium: float = Field(
        default=0.4, gt=0, lt=1, description="Probability from which the band is medium."
    )
    band_high: float = Field(default=0.7, gt=0, lt=1, description="Probability from which the band is high.")
    emit_initial_band: bool = Field(
        default=True,
        description="Emit churn-risk-changed (previous_band null) when a customer is first scored.",
    )
    as_of: datetime | None = Field(
        default=None,
        description="Fixed 'now' for recency (backtests on historical data). Unset: the wall clock, the one "
        "clock of the fleet (the profile's recency and CLV use it too); `crm up` shifts the demo data to end now.",
    )

    label_days: float = Field(default=90, gt=0, description="Churn label: no activity in the next N days.")
    snapshot_count: int = Field(default=3, ge=1, description="Point-in-time cutoffs per training set.")
    snapshot_step_days: float = Field(default=90, gt=0)
    bootstrap_max_customers: int | None = Field(
        default=5000, description="CDNOW customers used for the start-up model when no model file exists."
    )
    train_on_start: bool = Field(default=True, description="Train the CDNOW model at start when none exists.")
    calibration: Literal["platt", "isotonic"] = "platt"

    reasons_top: int = Field(default=5, ge=1, le=20)
    trend_window: int = Field(default=5, ge=2, description="Recent scores the trend compares against.")
    trend_delta: float = Field(default=0.05, ge=0, description="Probability change that counts as a trend.")
    clv_horizon_days: float = Field(default=365, gt=0, description="Horizon of the BG/NBD value estimate.")
    rules_file: str | None = Field(
        default=None, description="JSON/YAML rules seeded when no rule exists yet."
    )
    marketing_actions: list[str] = Field(
        default=["retention_offer", "win_back_mail", "engagement_mail"],
        description="Next-best-actions that are marketing: never offered to a customer whose latest "
        "crm.consent_changed.v1 for `marketing` withdrew it (a JSON list in the variable).",
    )
    marketing_needs_opt_in: bool = Field(
        default=False,
        description="True: marketing actions also need a recorded grant (opt-in); false: only a withdrawal "
        "stops them.",
    )

    consumer_group: str = "crm-churn"
    topic_suffix: str = Field(default="", description="Appended to every topic name (test isolation only).")

    @model_validator(mode="after")
    def _bands_ordered(self) -> ChurnSettings:
        if not self.band_medium < self.band_high:
            raise ValueError("CRM_CHURN_BAND_MEDIUM must be below CRM_CHURN_BAND_HIGH")
        return self

    def models_path(self) -> Path:
        return Path(self.model_dir or self.data_dir)

    def topic(self, name: str) -> str:
        return f"{name}{self.topic_suffix}"


@lru_cache
def get_settings() -> ChurnSettings:
    return ChurnSettings()
