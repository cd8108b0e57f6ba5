"""Fixtures of the gateway tests: a gateway on the real embedded broker and a real SQLite file."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.broker import free_port
from shared.settings import KafkaSettings
from tests.fleet_support import RunningFleet
from tests.gateway.support import ADMIN_KEY


def make_settings(kafka: KafkaSettings, data_dir: Path, **overrides: object) -> GatewaySettings:
    # Downstreams default to ports where nothing listens: each test starts the ones it needs.
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": str(data_dir),
        "kafka": kafka,
        "bootstrap_admin_key": SecretStr(ADMIN_KEY),
        "profile_url": f"http://127.0.0.1:{free_port()}",
        "recsys_url": f"http://127.0.0.1:{free_port()}",
        "sentiment_url": f"http://127.0.0.1:{free_port()}",
        "churn_url": f"http://127.0.0.1:{free_port()}",
        "rate_limit_per_s": 1000.0,
        "rate_limit_burst": 1000.0,
        "publish_timeout_s": 3.0,
        "webhook_backoff_s": 0.2,
        "webhook_poll_s": 0.05,
        # A fresh consumer group per app: no waiting on members that earlier tests' apps left behind.
        "webhook_group": f"crm-gateway-webhooks-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return GatewaySettings.model_validate(values)


@pytest.fixture
def gateway_settings(kafka_settings: KafkaSettings, tmp_path: Path) -> GatewaySettings:
    return make_settings(kafka_settings, tmp_path)


@pytest.fixture
def client(gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    with TestClient(create_app(gateway_settings)) as test_client:
        yield test_client


def fleet_settings(real_fleet: RunningFleet, data_dir: Path, **overrides: object) -> GatewaySettings:
    """A gateway in this process in front of the real fleet's services, on the fleet's broker."""
    kafka = KafkaSettings(
        bootstrap=real_fleet.bootstrap,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        poll_timeout_ms=100,
    )
    values: dict[str, object] = {
        "internal_api_key": SecretStr(real_fleet.fleet.internal_key),
        **{f"{name}_url": real_fleet.url_of(name) for name in ("profile", "recsys", "sentiment", "churn")},
    }
    values.update(overrides)
    return make_settings(kafka, data_dir, **values)


@contextmanager
def fleet_gateway(real_fleet: RunningFleet, data_dir: Path, **overrides: object) -> Iterator[TestClient]:
    """The gateway app in this process (its breakers and cache can be inspected) before the real fleet,
    with its 360 cache live (its invalidation listener has joined the fleet's topics)."""
    with TestClient(create_app(fleet_settings(real_fleet, data_dir, **overrides))) as client:
        cache = client.app.state.c360_cache  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while cache is not None and not cache.live:
            assert time.monotonic() < deadline, "the 360 cache's invalidation listener did not start"
            time.sleep(0.05)
        yield client
