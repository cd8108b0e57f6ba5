"""Settings every service shares: the Kafka connection, logging and the fleet's environment.

Each service defines one ``BaseSettings`` subclass with the env prefix ``CRM_<SERVICE>_`` and embeds
:class:`KafkaSettings` (prefix ``CRM_KAFKA_``), so one variable points the whole fleet at a broker.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from pydantic import AwareDatetime, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values of secrets that are public (in this repository: the compose file, the k8s placeholders, the fleet's
# dev keys). A service with environment=prod refuses them.
_PUBLIC_SECRET_MARKERS = ("change-me", "changeme", "change_me", "dev-only")
_DEV_KEY_IDS = frozenset({"devadmin", "composeadmin", "changeme"})


def is_public_secret(value: str) -> bool:
    """True for a placeholder or development secret anyone can read in this repository."""
    lowered = value.lower()
    if any(marker in lowered for marker in _PUBLIC_SECRET_MARKERS):
        return True
    parts = lowered.split("_", 2)
    return len(parts) == 3 and parts[0] == "crm" and parts[1] in _DEV_KEY_IDS


def refuse_public_secret(environment: str, variable: str, secret: SecretStr | None) -> None:
    """Raise (naming the variable) when a prod service is given a public secret."""
    if environment == "prod" and secret is not None and is_public_secret(secret.get_secret_value()):
        raise ValueError(
            f"{variable} holds a development or placeholder secret, refused with environment=prod: "
            "set it to a secret of your own"
        )


class KafkaSettings(BaseSettings):
    """How to reach Kafka and how consumers behave; shared by every service."""

    model_config = SettingsConfigDict(env_prefix="CRM_KAFKA_", extra="ignore")

    bootstrap: str = Field(
        default="",
        description="Comma-separated bootstrap servers. Empty means: use the embedded broker started by "
        "`crm up` (which sets this variable for the processes it starts).",
    )
    client_id: str = "crm"
    partitions: int = Field(default=4, ge=1, description="Partitions for topics this fleet creates.")
    replication_factor: int = Field(default=1, ge=1)
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    max_poll_records: int = Field(default=2000, ge=1, description="Most events applied per transaction.")
    poll_timeout_ms: int = Field(default=200, ge=1)
    fetch_max_wait_ms: int = Field(
        default=50,
        ge=0,
        description="Longest the broker may hold a fetch that found no new events. The embedded Tansu "
        "broker answers such a fetch only when this runs out, even if events arrive meanwhile, so it "
        "bounds how stale a consumer is (kafka-python's default 500 ms added ~120 ms at the median). "
        "Kafka answers as soon as events arrive; there a low value only means more empty fetches when idle.",
    )
    handler_retries: int = Field(default=3, ge=0, description="Retries of a failing handler before DLQ.")
    retry_backoff_ms: int = Field(default=100, ge=0)
    auto_create_topics: bool = True
    ledger_retention_hours: float = Field(
        default=192,
        ge=0,
        description="How long a consumer group's ledger remembers an applied event id. An id may go once "
        "its event can no longer be delivered again: keep this above the topics' retention (7 days in "
        "deploy/k8s, so 8 days). 0 keeps every id for ever (the ledger, and its cost per event, then grow "
        "without bound).",
    )
    ledger_prune_interval_s: float = Field(
        default=3600, gt=0, description="How often a consumer deletes ids older than the retention."
    )

    def servers(self) -> list[str]:
        """The bootstrap list; fails with a clear message when nothing is configured."""
        servers = [s.strip() for s in self.bootstrap.split(",") if s.strip()]
        if not servers:
            raise ValueError(
                "CRM_KAFKA_BOOTSTRAP is empty: set it to your Kafka bootstrap servers "
                "(host:port[,host:port]) or start the fleet with `crm up`, which runs an embedded broker."
            )
        return servers


class EventRules(BaseSettings):
    """What a valid event is, beyond its schema; shared by every service (prefix ``CRM_EVENTS_``).

    The payload and envelope validators in ``shared.contracts`` read these through
    :func:`get_event_rules`, so the gateway (422) and every consumer (dead letter) apply the same rules.
    """

    model_config = SettingsConfigDict(env_prefix="CRM_EVENTS_", extra="ignore")

    time_floor: AwareDatetime = Field(
        default=datetime(1970, 1, 1, tzinfo=UTC),
        description="Events dated before this are refused. Historical imports need it early; the demo "
        "data (1997-1998) is well after the default.",
    )
    max_future_skew_s: float = Field(
        default=86_400,
        ge=0,
        description="How far past the receiver's clock an event's time may be (clock skew between systems).",
    )
    max_amount: float = Field(
        default=1e9, gt=0, description="Largest order amount or price accepted, in the event's currency."
    )

    @field_validator("max_amount")
    @classmethod
    def _finite(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("CRM_EVENTS_MAX_AMOUNT must be a finite number")
        return value

    @property
    def time_floor_s(self) -> float:
        return self.time_floor.timestamp()


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``env_prefix`` to ``CRM_<SERVICE>_``."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    environment: Literal["dev", "test", "prod"] = "dev"
    log_level: str = "INFO"
    log_json: bool | None = Field(default=None, description="JSON logs; defaults to on outside dev.")
    data_dir: str = Field(default="var", description="Where SQLite files and model versions are kept.")
    internal_api_key: SecretStr | None = Field(
        default=None,
        description="When set, every non-probe route of an internal service requires this key "
        "(the gateway sends it). Unset: internal services trust their network.",
    )
    consume_events: bool = Field(default=True, description="Run the Kafka consumers inside the service.")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _check_fleet_wide(self) -> ServiceSettings:
        prefix = self.model_config.get("env_prefix", "CRM_")
        refuse_public_secret(self.environment, f"{prefix}INTERNAL_API_KEY", self.internal_api_key)
        try:
            get_event_rules()  # an invalid CRM_EVENTS_* stops the service at start-up, not at its first event
        except ValidationError as exc:
            problems = "; ".join(
                f"CRM_EVENTS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise ValueError(f"invalid event rules: {problems}") from exc
        return self

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.environment != "dev"


@lru_cache
def get_kafka_settings() -> KafkaSettings:
    return KafkaSettings()


@lru_cache
def get_event_rules() -> EventRules:
    """The event rules of this process, read from ``CRM_EVENTS_*`` once (tests: ``cache_clear()``)."""
    return EventRules()
