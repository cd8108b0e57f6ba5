"""Keys, scopes, 401 vs 403, revocation and the per-key rate limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.auth import Scope
from shared.settings import KafkaSettings
from tests.gateway.conftest import make_settings
from tests.gateway.support import ADMIN_KEY, make_key

# (method, path, json body, the scope the route needs)
ROUTES: list[tuple[str, str, object, str]] = [
    (
        "POST",
        "/v1/events",
        {"type": "product_view", "customer": {"customer_id": "c1"}, "item_id": "i1"},
        Scope.EVENTS_WRITE,
    ),
    ("POST", "/v1/actions/reactions", {"customer_id": "c1"}, Scope.EVENTS_WRITE),
    ("GET", "/v1/customers/c1", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/customers?limit=5", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/customers/c1/sentiment", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/customers/lookup?type=email&value=a@b.c", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/customers/c1/timeline", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/customers/c1/recommendations", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/customers/c1/churn", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/segments", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/segments/s1", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/segments/s1/members", None, Scope.CUSTOMERS_READ),
    ("POST", "/v1/recommendations/session", {"item_ids": ["1"]}, Scope.CUSTOMERS_READ),
    ("GET", "/v1/items/i1", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/models", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/items/i1/similar", None, Scope.CUSTOMERS_READ),
    ("POST", "/v1/sentiment", {"texts": ["hi"]}, Scope.CUSTOMERS_READ),
    ("GET", "/v1/churn/at-risk", None, Scope.CUSTOMERS_READ),
    ("PATCH", "/v1/customers/c1", {"traits": {}}, Scope.CUSTOMERS_WRITE),
    ("POST", "/v1/merges", {"customer_ids": ["a", "b"]}, Scope.CUSTOMERS_WRITE),
    ("POST", "/v1/merges/m1/undo", None, Scope.CUSTOMERS_WRITE),
    ("POST", "/v1/segments", {"name": "x"}, Scope.CUSTOMERS_WRITE),
    ("PATCH", "/v1/segments/s1", {"name": "y"}, Scope.CUSTOMERS_WRITE),
    ("DELETE", "/v1/segments/s1", None, Scope.CUSTOMERS_WRITE),
    ("GET", "/v1/customers/c1/export", None, Scope.PRIVACY_ADMIN),
    ("DELETE", "/v1/customers/c1", None, Scope.PRIVACY_ADMIN),
    ("GET", "/v1/admin/keys", None, Scope.ADMIN),
    ("POST", "/v1/admin/keys", {"name": "n", "scopes": ["customers:read"]}, Scope.ADMIN),
    ("DELETE", "/v1/admin/keys/nokey", None, Scope.ADMIN),
    ("GET", "/v1/webhooks", None, Scope.ADMIN),
    (
        "POST",
        "/v1/webhooks",
        {"url": "http://127.0.0.1:9/x", "event_types": ["churn_risk_changed"]},
        Scope.ADMIN,
    ),
    ("GET", "/v1/webhooks/w1/deliveries", None, Scope.ADMIN),
    ("DELETE", "/v1/webhooks/w1", None, Scope.ADMIN),
    ("GET", "/v1/support/intents", None, Scope.CUSTOMERS_READ),
    ("PUT", "/v1/support/intents", {"intents": []}, Scope.ADMIN),
    ("GET", "/v1/support/articles", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/support/articles/a1", None, Scope.CUSTOMERS_READ),
    ("PUT", "/v1/support/articles/a1", {"title": "t", "body": "b"}, Scope.ADMIN),
    ("DELETE", "/v1/support/articles/a1", None, Scope.ADMIN),
    ("GET", "/v1/support/tickets", None, Scope.CUSTOMERS_READ),
    ("GET", "/v1/support/tickets/t1", None, Scope.CUSTOMERS_READ),
    ("PATCH", "/v1/support/tickets/t1", {"status": "resolved"}, Scope.CUSTOMERS_WRITE),
    ("GET", "/v1/support/tickets/t1/suggestions", None, Scope.CUSTOMERS_READ),
    ("POST", "/v1/support/tickets/t1/suggestions/a1/feedback", {"action": "sent"}, Scope.CUSTOMERS_WRITE),
    ("POST", "/v1/support/triage", {"text": "where is my order?"}, Scope.CUSTOMERS_READ),
    ("GET", "/v1/support/customers/c1", None, Scope.CUSTOMERS_READ),
]


def call(client: TestClient, method: str, path: str, body: object, key: str | None) -> object:
    headers = {"X-API-Key": key} if key else {}
    return client.request(method, path, json=body, headers=headers)


def test_every_v1_route_is_in_the_scope_table(gateway_settings: GatewaySettings) -> None:
    paths = create_app(gateway_settings).openapi()["paths"]
    routes = {
        (method.upper(), path) for path, ops in paths.items() if path.startswith("/v1") for method in ops
    }
    table = {(m, p.split("?")[0]) for m, p, _, _ in ROUTES}
    normalised = {
        (
            m,
            p.replace("{customer_id}", "c1")
            .replace("{segment_id}", "s1")
            .replace("{merge_id}", "m1")
            .replace("{item_id}", "i1")
            .replace("{key_id}", "nokey")
            .replace("{subscription_id}", "w1")
            .replace("{article_id}", "a1")
            .replace("{ticket_id}", "t1"),
        )
        for m, p in routes
    }
    assert normalised == table


def test_each_scope_is_enforced(client: TestClient) -> None:
    keys = {scope: make_key(client, scope) for scope in sorted(Scope.ALL - {Scope.ADMIN})}
    for method, path, body, needed in ROUTES:
        for scope, key in keys.items():
            response = call(client, method, path, body, key)
            if scope == needed:
                assert response.status_code not in (401, 403), (method, path, scope, response.text)
            else:
                assert response.status_code == 403, (method, path, scope, response.text)
                assert response.json()["error"] == "Forbidden"
        # The admin scope holds every scope.
        assert call(client, method, path, body, ADMIN_KEY).status_code not in (401, 403), (method, path)


def test_missing_wrong_and_revoked_keys_answer_401(client: TestClient) -> None:
    missing = client.get("/v1/customers/c1")
    assert missing.status_code == 401
    assert missing.json()["error"] == "Unauthorized"
    assert missing.json()["request_id"]
    assert client.get("/v1/customers/c1", headers={"X-API-Key": "nonsense"}).status_code == 401
    key = make_key(client, Scope.CUSTOMERS_READ)
    forged = key[:-4] + "AAAA"
    assert client.get("/v1/segments", headers={"X-API-Key": forged}).status_code == 401
    key_id = key.split("_")[1]
    revoked = client.delete(f"/v1/admin/keys/{key_id}", headers={"X-API-Key": ADMIN_KEY})
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    assert client.get("/v1/segments", headers={"X-API-Key": key}).status_code == 401


def test_keys_are_shown_once_and_stored_hashed(client: TestClient) -> None:
    created = client.post(
        "/v1/admin/keys", json={"name": "shop", "scopes": ["events:write"]}, headers={"X-API-Key": ADMIN_KEY}
    )
    assert created.status_code == 201
    key = created.json()["key"]
    listed = client.get("/v1/admin/keys", headers={"X-API-Key": ADMIN_KEY}).json()
    assert [k["name"] for k in listed] == ["shop"]
    assert "key" not in listed[0]
    engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        dump = "\n".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM gateway_api_keys"))
    assert key not in dump
    assert key.split("_", 2)[2] not in dump
    bad = client.post(
        "/v1/admin/keys", json={"name": "x", "scopes": ["root"]}, headers={"X-API-Key": ADMIN_KEY}
    )
    assert bad.status_code == 422


def test_rate_limit_answers_429_with_retry_after(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    settings = make_settings(kafka_settings, tmp_path, rate_limit_per_s=2.0, rate_limit_burst=5.0)
    with TestClient(create_app(settings)) as client:
        key = make_key(client, Scope.ADMIN)
        statuses = [client.get("/v1/webhooks", headers={"X-API-Key": key}).status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5
        assert 429 in statuses[5:]
        limited = client.get("/v1/webhooks", headers={"X-API-Key": key})
        assert limited.status_code == 429
        assert limited.json()["error"] == "RateLimited"
        assert int(limited.headers["Retry-After"]) >= 1
        # Another key has its own bucket; a key's own limit overrides the default.
        other = make_key(client, Scope.ADMIN, rate_limit_per_s=50)
        assert all(
            client.get("/v1/webhooks", headers={"X-API-Key": other}).status_code == 200 for _ in range(20)
        )


@pytest.mark.parametrize("value", ["crm_only-two", "plain-password"])
def test_bootstrap_key_must_have_the_key_format(
    kafka_settings: KafkaSettings, tmp_path: Path, value: str
) -> None:
    with pytest.raises(ValueError, match="CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY"):
        make_settings(kafka_settings, tmp_path, bootstrap_admin_key=value)
