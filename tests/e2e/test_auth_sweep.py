"""Every route of the gateway's OpenAPI needs a key (401 without one) and its scope (403 with a key that
lacks it), checked against the running gateway with a key of each single scope."""

from __future__ import annotations

import re

import httpx
import pytest

from shared.auth import Scope
from tests.fleet_support import RunningFleet

pytestmark = pytest.mark.slow

SINGLE_SCOPES = sorted(Scope.ALL - {Scope.ADMIN})
OPEN = {"/livez", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def operations(gateway: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{gateway}/openapi.json", timeout=10).json()
    found = []
    for path, methods in spec["paths"].items():
        if path in OPEN or not path.startswith("/v1/"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "no-such-thing", path)
        found.extend(
            (method.upper(), concrete)
            for method in methods
            if method in {"get", "post", "put", "patch", "delete"}
        )
    return found


def test_every_route_needs_a_key_and_its_scope(real_fleet: RunningFleet) -> None:
    gateway = real_fleet.gateway
    ops = operations(gateway)
    assert len(ops) >= 25
    with real_fleet.client() as admin:
        keys = {}
        for scope in SINGLE_SCOPES:
            created = admin.post("/v1/admin/keys", json={"name": f"sweep {scope}", "scopes": [scope]})
            assert created.status_code == 201, created.text
            keys[scope] = created.json()
    try:
        with httpx.Client(base_url=gateway, timeout=30) as client:
            for method, path in ops:
                anonymous = client.request(method, path, json={})
                assert anonymous.status_code == 401, f"{method} {path} without a key: {anonymous.status_code}"
                assert anonymous.json()["error"] == "Unauthorized"
                allowed = []
                for scope, key in keys.items():
                    answer = client.request(method, path, json={}, headers={"X-API-Key": key["key"]})
                    assert answer.status_code != 401, f"{method} {path} refused a valid {scope} key"
                    if answer.status_code == 403:
                        assert answer.json()["error"] == "Forbidden"
                    else:
                        allowed.append(scope)
                # Exactly the route's own scope gets past authorisation; every other single scope is 403.
                assert len(allowed) <= 1, f"{method} {path} is open to {allowed}"
                print(f"{method} {path}: {allowed[0] if allowed else 'admin only'}")
    finally:
        with real_fleet.client() as admin:
            for key in keys.values():
                admin.delete(f"/v1/admin/keys/{key['key_id']}")
