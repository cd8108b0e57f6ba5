"""Settings every service shares: the Kafka connection, logging and the fleet's environment.

Each service defines one ``BaseSettings`` subclass with the env prefix ``CRM_<SERVICE>_`` and embeds
:class:`KafkaSettings` (prefix ``CRM_KAFKA_``), so one variable points the whole fleet at a broker.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.environment != "dev"


@lru_cache
def get_kafka_settings() -> KafkaSettings:
    return KafkaSettings()
