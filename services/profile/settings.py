"""Settings of the profile service (env prefix ``CRM_PROFILE_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, refuse_public_secret

# A fixed development key so a fresh checkout runs; the app logs a warning whenever it is in use, and a
# service with environment=prod refuses it.
DEV_PII_KEY = "crm-dev-only-pii-key-change-me-in-production"


class ProfileSettings(ServiceSettings):
    """Where profiles live, how PII is protected, and the defaults of the batch jobs."""

    model_config = SettingsConfigDict(env_prefix="CRM_PROFILE_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (e.g. postgresql://user@host/db). "
        "Empty: SQLite at <data_dir>/profile.db.",
    )
    pii_key: SecretStr = Field(
        default=SecretStr(DEV_PII_KEY),
        description="Secret from which the PII encryption key (AES-GCM) and the lookup-hash key "
        "(HMAC-SHA256) are derived. Changing it makes stored PII unreadable.",
    )
    clv_horizon_days: int = Field(
        default=90, ge=1, le=3650, description="Horizon of expected purchases/value."
    )
    timeline_page_max: int = Field(default=500, ge=1)
    max_clusters: int = Field(default=8, ge=2, le=20)
    max_poll_records: int = Field(
        default=2000,
        ge=1,
        description="Events per consumer batch for the profile's consumers (overrides CRM_KAFKA_MAX_POLL_RECORDS): "
        "a batch costs a fixed number of statements, so larger batches keep up with bursts.",
    )
    batch_interval_s: float = Field(
        default=600.0,
        ge=0,
        description="Refit CLV and the RFM clusters in the background this often (first run 30 s after "
        "start-up); 0 turns it off (use `crm profile fit-clv` / `crm profile cluster`).",
    )
    marketing_needs_opt_in: bool = Field(
        default=False,
        description="True: a marketing segment export (purpose=marketing) also leaves out customers with no "
        "recorded marketing consent (opt-in); false: only a withdrawal does. Set it like "
        "CRM_CHURN_MARKETING_NEEDS_OPT_IN.",
    )

    @model_validator(mode="after")
    def _no_public_pii_key_in_prod(self) -> ProfileSettings:
        refuse_public_secret(self.environment, "CRM_PROFILE_PII_KEY", self.pii_key)
        return self

    @property
    def uses_dev_pii_key(self) -> bool:
        return self.pii_key.get_secret_value() == DEV_PII_KEY


@lru_cache
def get_settings() -> ProfileSettings:
    return ProfileSettings()
