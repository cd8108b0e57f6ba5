"""Secrets in the gateway: keys stored as keyed hashes (HMAC with a pepper), old plain hashes upgraded in
place, dev secrets refused with environment=prod, and no key ever written to the log."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from services.gateway.app import create_app
from services.gateway.models import ApiKey
from services.gateway.settings import GatewaySettings
from shared.auth import Scope, generate_api_key
from shared.db import make_engine, make_session_factory, sqlite_url, unit_of_work
from shared.settings import KafkaSettings
from tests.gateway.conftest import make_settings
from tests.gateway.support import ADMIN_KEY, make_key

REAL_ADMIN_KEY = "crm_a1b2c3_" + "q" * 43


def _stored_hash(data_dir: Path, key_id: str) -> str:
    engine = make_engine(sqlite_url(str(data_dir), "gateway"))
    try:
        with engine.connect() as connection:
            return str(
                connection.execute(select(ApiKey.key_hash).where(ApiKey.key_id == key_id)).scalar_one()
            )
    finally:
        engine.dispose()


def _whoami(client: TestClient, key: str) -> int:
    return client.get("/v1/admin/keys", headers={"X-API-Key": key}).status_code


def test_keys_are_stored_as_keyed_hashes_that_need_the_pepper(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    pepper = SecretStr("pepper-one-" + "x" * 32)
    with TestClient(create_app(make_settings(kafka_settings, tmp_path, api_key_pepper=pepper))) as client:
        key = make_key(client, Scope.ADMIN)
        assert _whoami(client, key) == 200
    key_id = key.split("_")[1]
    stored = _stored_hash(tmp_path, key_id)
    assert stored.startswith("h1$")
    assert hashlib.sha256(key.encode()).hexdigest() not in stored
    assert key.split("_", 2)[2] not in stored
    other = SecretStr("pepper-two-" + "x" * 32)
    with TestClient(create_app(make_settings(kafka_settings, tmp_path, api_key_pepper=other))) as client:
        assert _whoami(client, key) == 401  # the table alone does not confirm a key
        assert _whoami(client, ADMIN_KEY) == 200  # the bootstrap key is not stored


def test_plain_sha256_rows_are_upgraded_in_place_and_keep_working(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = make_settings(kafka_settings, tmp_path)
    with TestClient(create_app(settings)):
        pass  # creates the tables
    key_id, key = generate_api_key()
    engine = make_engine(sqlite_url(str(tmp_path), "gateway"))
    with unit_of_work(make_session_factory(engine)) as session:  # a row as older gateways wrote it
        session.add(ApiKey(key_id=key_id, key_hash=hashlib.sha256(key.encode()).hexdigest(), name="old",
                           scopes=[Scope.ADMIN], active=True, created_at=datetime.now(UTC)))  # fmt: skip
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        assert _stored_hash(tmp_path, key_id).startswith("h1$")
        assert _whoami(client, key) == 200
        assert _whoami(client, key[:-1] + ("A" if key[-1] != "A" else "B")) == 401
        # A row an older replica writes while this gateway runs (a rolling upgrade) works too.
        late_id, late_key = generate_api_key()
        engine = make_engine(sqlite_url(str(tmp_path), "gateway"))
        with unit_of_work(make_session_factory(engine)) as session:
            session.add(ApiKey(key_id=late_id, key_hash=hashlib.sha256(late_key.encode()).hexdigest(),
                               name="late", scopes=[Scope.ADMIN], active=True, created_at=datetime.now(UTC)))  # fmt: skip
        engine.dispose()
        assert _whoami(client, late_key) == 200
        assert _stored_hash(tmp_path, late_id).startswith("h1$")


def test_no_key_is_logged(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    key = make_key(client, Scope.EVENTS_WRITE)
    client.post("/v1/events", json={"type": "product_view", "customer": {"customer_id": "c"}, "item_id": "i"},
                headers={"X-API-Key": key})  # fmt: skip
    client.get("/v1/admin/keys", headers={"X-API-Key": key + "x"})  # a wrong key, 401
    client.get("/v1/admin/keys", headers={"X-API-Key": ADMIN_KEY})
    logged = capsys.readouterr()
    for secret in (key, key.split("_", 2)[2], ADMIN_KEY.split("_", 2)[2]):
        assert secret not in logged.out + logged.err


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("bootstrap_admin_key", "crm_devadmin_abcdefghijklmnop", "CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY"),
        (
            "bootstrap_admin_key",
            "crm_composeadmin_change-me-bootstrap-secret",
            "CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY",
        ),
        (
            "bootstrap_admin_key",
            "crm_changeme_CHANGE-ME-bootstrap-admin-secret",
            "CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY",
        ),
        ("internal_api_key", "change-me-internal-key", "CRM_GATEWAY_INTERNAL_API_KEY"),
        ("internal_api_key", "CHANGE-ME-internal-api-key", "CRM_GATEWAY_INTERNAL_API_KEY"),
        ("api_key_pepper", None, "CRM_GATEWAY_API_KEY_PEPPER"),  # the built-in dev pepper
        ("api_key_pepper", "CHANGE-ME-api-key-pepper", "CRM_GATEWAY_API_KEY_PEPPER"),
    ],
)
def test_prod_refuses_dev_secrets_naming_the_variable(field: str, value: str | None, variable: str) -> None:
    values: dict[str, object] = {
        "environment": "prod",
        "bootstrap_admin_key": SecretStr(REAL_ADMIN_KEY),
        "internal_api_key": SecretStr("internal-" + "k" * 32),
        "api_key_pepper": SecretStr("pepper-" + "p" * 32),
    }
    if value is None:
        values.pop(field)
    else:
        values[field] = SecretStr(value)
    with pytest.raises(ValidationError, match=variable):
        GatewaySettings.model_validate(values)
    values["environment"] = "dev"
    assert GatewaySettings.model_validate(values).environment == "dev"  # dev secrets are fine in dev


def test_prod_with_own_secrets_starts_and_reads_them_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_GATEWAY_ENVIRONMENT", "prod")
    monkeypatch.setenv("CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY", REAL_ADMIN_KEY)
    monkeypatch.setenv("CRM_GATEWAY_API_KEY_PEPPER", "pepper-" + "p" * 32)
    assert GatewaySettings().environment == "prod"
    monkeypatch.setenv("CRM_GATEWAY_INTERNAL_API_KEY", "change-me-internal-key")
    with pytest.raises(ValidationError, match="CRM_GATEWAY_INTERNAL_API_KEY"):
        GatewaySettings()
