"""Fixtures of the gateway tests: a gateway on the real embedded broker and a real SQLite file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.broker import free_port
from shared.settings import KafkaSettings
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
