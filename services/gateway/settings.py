"""Settings of the gateway (env prefix ``CRM_GATEWAY_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.auth import key_id_of
from shared.settings import ServiceSettings, refuse_public_secret

# A fixed development pepper so a fresh checkout runs; refused with environment=prod.
DEV_API_KEY_PEPPER = "crm-dev-only-api-key-pepper-change-me"


class GatewaySettings(ServiceSettings):
    """The public API: where the services behind it live, limits, keys and webhooks."""

    model_config = SettingsConfigDict(env_prefix="CRM_GATEWAY_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="API keys, idempotency records and webhooks. Default: SQLite in data_dir."
    )
    bootstrap_admin_key: SecretStr | None = Field(
        default=None,
        description="An admin key (format crm_<id>_<secret>) that always works; use it to create real keys. "
        "`crm up` sets a dev one and prints it. Generate one with `crm gateway new-key`.",
    )
    api_key_pepper: SecretStr = Field(
        default=SecretStr(DEV_API_KEY_PEPPER),
        description="Server-side secret mixed into every stored API-key hash (HMAC-SHA256), kept out of the "
        "database. Changing it invalidates every stored key (the bootstrap key keeps working).",
    )
    profile_url: str = "http://127.0.0.1:8001"
    recsys_url: str = "http://127.0.0.1:8002"
    sentiment_url: str = "http://127.0.0.1:8003"
    churn_url: str = "http://127.0.0.1:8004"
    support_url: str = "http://127.0.0.1:8005"
    downstream_timeout_s: float = Field(default=2.0, gt=0, description="Per-call timeout to a downstream.")
    c360_timeout_s: float = Field(
        default=0.8, gt=0, description="Per-call timeout of the 360's fan-out (a slow part is left out)."
    )
    c360_cache_ttl_s: float = Field(
        default=30.0,
        ge=0,
        description="Age after which a cached 360 is refreshed in the background on its next read (that "
        "read is still answered from the cache; none is served past twice this age). The fleet's events "
        "about the customer evict it at once. 0 turns the cache off (every read fans out).",
    )
    c360_cache_settle_s: float = Field(
        default=1.0,
        gt=0,
        description="A 360 fetched within this long after an event about the customer is not cached (the "
        "services behind the gateway are still applying that event).",
    )
    c360_cache_max_entries: int = Field(default=100_000, ge=1)
    downstream_max_connections: int = Field(default=100, ge=1)
    breaker_failures: int = Field(default=5, ge=1, description="Consecutive failures that open a breaker.")
    breaker_reset_s: float = Field(default=5.0, gt=0, description="How long an open breaker fails fast.")
    rate_limit_per_s: float = Field(default=50.0, gt=0, description="Token-bucket refill per API key.")
    rate_limit_burst: float = Field(default=100.0, ge=1, description="Token-bucket size per API key.")
    max_batch_size: int = Field(default=1000, ge=1, description="Most events in one POST /v1/events.")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    publish_timeout_s: float = Field(
        default=5.0, gt=0, description="How long ingest waits for broker acks before answering 503."
    )
    key_cache_s: float = Field(default=5.0, ge=0, description="How long a key lookup is cached.")
    c360_recommendations: int = Field(default=5, ge=1, le=100)
    webhook_group: str = Field(
        default="crm-gateway-webhooks", description="Consumer group that turns fleet events into deliveries."
    )
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_s: float = Field(default=1.0, gt=0, description="First retry delay; doubles per attempt.")
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_poll_s: float = Field(default=0.2, gt=0)
    marketing_needs_opt_in: bool = Field(
        default=False,
        description="True: marketing webhooks also skip customers with no recorded marketing consent (opt-in); "
        "false: only a withdrawal does. Set it like CRM_CHURN_MARKETING_NEEDS_OPT_IN.",
    )

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _key_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # an empty variable means unset
        if value is not None and key_id_of(value.get_secret_value()) is None:
            raise ValueError(
                "CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY must look like crm_<id>_<secret> "
                "(`crm gateway new-key` makes one)"
            )
        return value

    @model_validator(mode="after")
    def _no_public_secrets_in_prod(self) -> GatewaySettings:
        refuse_public_secret(self.environment, "CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY", self.bootstrap_admin_key)
        refuse_public_secret(self.environment, "CRM_GATEWAY_API_KEY_PEPPER", self.api_key_pepper)
        return self

    def downstream_urls(self) -> dict[str, str]:
        return {
            "profile": self.profile_url,
            "recsys": self.recsys_url,
            "sentiment": self.sentiment_url,
            "churn": self.churn_url,
            "support": self.support_url,
        }


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
