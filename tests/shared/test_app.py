"""The service kit: one error shape, request ids, probes, metrics, API keys with scopes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from shared.app import build_app, register_readiness
from shared.auth import ApiKeyRecord, InMemoryKeyStore, Scope, generate_api_key, hash_api_key, require_scopes
from shared.errors import NotFound


class CustomerNotFound(NotFound):
    """No customer has this id."""


class Body(BaseModel):
    name: str = Field(min_length=1)


def make_app(ready: dict[str, bool]) -> tuple[FastAPI, str, str]:
    app = build_app(service="demo", title="demo")
    store = InMemoryKeyStore()
    reader_id, reader_key = generate_api_key()
    admin_id, admin_key = generate_api_key()
    store.add(ApiKeyRecord(reader_id, hash_api_key(reader_key), "reader", frozenset({Scope.CUSTOMERS_READ})))
    store.add(ApiKeyRecord(admin_id, hash_api_key(admin_key), "admin", frozenset({Scope.ADMIN})))
    app.state.api_keys = store
    register_readiness(app, "database", lambda: ready["database"])

    @app.get("/customers/{customer_id}")
    def get_customer(
        customer_id: str, key: Annotated[ApiKeyRecord, Depends(require_scopes(Scope.CUSTOMERS_READ))]
    ) -> dict[str, str]:
        if customer_id != "c1":
            raise CustomerNotFound(f"no customer {customer_id}")
        return {"id": customer_id, "key": key.name}

    @app.post("/customers")
    def create(
        body: Body, _: Annotated[ApiKeyRecord, Depends(require_scopes(Scope.CUSTOMERS_WRITE))]
    ) -> Body:
        return body

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaput")

    return app, reader_key, admin_key


def test_domain_error_has_the_one_shape_and_echoes_the_request_id() -> None:
    app, reader, _ = make_app({"database": True})
    with TestClient(app) as client:
        response = client.get("/customers/c2", headers={"X-API-Key": reader, "X-Request-ID": "req-7"})
    assert response.status_code == 404
    assert response.json() == {"error": "CustomerNotFound", "detail": "no customer c2", "request_id": "req-7"}
    assert response.headers["x-request-id"] == "req-7"


def test_validation_unknown_route_and_crash_use_the_same_shape() -> None:
    app, _, admin = make_app({"database": True})
    with TestClient(app, raise_server_exceptions=False) as client:
        invalid = client.post("/customers", json={"name": ""}, headers={"X-API-Key": admin})
        missing = client.get("/nowhere")
        crash = client.get("/boom")
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "InvalidRequest"
    assert invalid.json()["detail"][0]["loc"] == ["body", "name"]
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"
    assert crash.status_code == 500
    assert crash.json()["error"] == "InternalError"
    assert crash.json()["request_id"]


def test_keys_and_scopes_401_vs_403() -> None:
    app, reader, admin = make_app({"database": True})
    with TestClient(app) as client:
        assert client.get("/customers/c1").status_code == 401
        assert client.get("/customers/c1", headers={"X-API-Key": reader + "x"}).status_code == 401
        assert client.get("/customers/c1", headers={"X-API-Key": "crm_nope_secret"}).status_code == 401
        assert client.get("/customers/c1", headers={"X-API-Key": reader}).json()["key"] == "reader"
        forbidden = client.post("/customers", json={"name": "a"}, headers={"X-API-Key": reader})
        assert forbidden.status_code == 403
        assert forbidden.json()["error"] == "Forbidden"
        assert "customers:write" in forbidden.json()["detail"]
        assert client.post("/customers", json={"name": "a"}, headers={"X-API-Key": admin}).status_code == 200


def test_readyz_follows_the_registered_checks_and_livez_does_no_io() -> None:
    ready = {"database": False}
    app, _, _ = make_app(ready)
    with TestClient(app) as client:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["detail"]["checks"] == {"database": False}
        assert client.get("/livez").status_code == 200
        ready["database"] = True
        assert client.get("/readyz").json()["checks"] == {"database": True}


def test_metrics_are_labelled_by_route_template() -> None:
    app, reader, _ = make_app({"database": True})
    with TestClient(app) as client:
        client.get("/customers/c1", headers={"X-API-Key": reader})
        text = client.get("/metrics").text
    assert 'route="/customers/{customer_id}"' in text
    assert 'route="/customers/c1"' not in text
