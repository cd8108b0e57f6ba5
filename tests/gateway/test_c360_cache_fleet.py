"""The customer 360 cache in front of the real fleet: repeat reads skip the fan-out, the fleet's own
events and the gateway's writes evict, a cached answer still needs a valid key, concurrent misses share
one fan-out. The real profile service's metrics count the reads it served."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from shared.auth import Scope
from tests.fleet_support import RunningFleet, wait_until
from tests.gateway.conftest import fleet_gateway
from tests.gateway.support import ADMIN_KEY, make_key

pytestmark = pytest.mark.slow
HEADERS = {"X-API-Key": ADMIN_KEY}
_PROFILE_CALLS = re.compile(
    r'^crm_gateway_downstream_calls_total\{downstream="profile",outcome="[^"]+"\} (\S+)$', re.M
)


def profile_reads(client: TestClient) -> float:
    """Calls this process's gateways made to the profile service (a 360 fan-out makes one): the gateway's
    own counter, so reads by anything else in the fleet do not count."""
    return sum(float(v) for v in _PROFILE_CALLS.findall(client.get("/metrics").text))


def new_customer(client: TestClient, name: str) -> str:
    customer = f"cache-{uuid.uuid4().hex[:10]}"
    events = [{"type": "identify", "customer": {"customer_id": customer}, "traits": {"name": name}}]
    assert client.post("/v1/events", json=events, headers=HEADERS).status_code == 202
    wait_until(
        lambda: client.get(f"/v1/customers/{customer}", headers=HEADERS).status_code == 200,
        timeout_s=30,
        what=f"the profile of {customer}",
    )
    return customer


def name_of(client: TestClient, customer: str) -> str:
    response = client.get(f"/v1/customers/{customer}", headers=HEADERS)
    assert response.status_code == 200, response.text
    return str(response.json()["profile"]["traits"]["name"])


def wait_until_cached(real_fleet: RunningFleet, client: TestClient, customer: str) -> None:
    """Read until a read reaches no service: the answer is complete and the fleet's events about the new
    customer (its churn band, its resolved identify) have stopped evicting it."""

    def cached() -> bool:
        name_of(client, customer)
        before = profile_reads(client)
        name_of(client, customer)
        return profile_reads(client) == before

    wait_until(cached, timeout_s=30, interval_s=0.3, what=f"the 360 of {customer} to be cached")


def settled_name(client: TestClient, customer: str, expected: str) -> None:
    wait_until(
        lambda: name_of(client, customer) == expected, timeout_s=30, what=f"the 360 to show {expected!r}"
    )


def test_repeat_reads_are_cached_until_the_fleet_announces_a_change(
    real_fleet: RunningFleet, tmp_path: Path
) -> None:
    with fleet_gateway(real_fleet, tmp_path, c360_cache_settle_s=0.2) as client:
        customer = new_customer(client, "Ada")
        settled_name(client, customer, "Ada")
        wait_until_cached(real_fleet, client, customer)
        reads = profile_reads(client)
        for _ in range(5):
            assert name_of(client, customer) == "Ada"
        assert profile_reads(client) == reads  # served from the cache

        # An event through Kafka: the profile applies it and republishes it resolved, which evicts.
        events = [{"type": "identify", "customer": {"customer_id": customer}, "traits": {"name": "Grace"}}]
        # Sent through the fleet's own gateway process: this gateway learns of it from Kafka alone.
        real = httpx.post(
            f"{real_fleet.gateway}/v1/events", json=events, headers={"X-API-Key": real_fleet.admin_key}
        )
        assert real.status_code == 202
        settled_name(client, customer, "Grace")


def test_the_gateways_own_writes_evict_at_once(real_fleet: RunningFleet, tmp_path: Path) -> None:
    with fleet_gateway(real_fleet, tmp_path) as client:
        customer = new_customer(client, "Ada")
        settled_name(client, customer, "Ada")
        response = client.patch(
            f"/v1/customers/{customer}", json={"traits": {"name": "Grace"}}, headers=HEADERS
        )
        assert response.status_code == 200, response.text
        assert name_of(client, customer) == "Grace"  # no waiting: read-your-writes


def test_erasure_evicts_whether_it_came_through_this_gateway_or_the_fleet(
    real_fleet: RunningFleet, tmp_path: Path
) -> None:
    with fleet_gateway(real_fleet, tmp_path) as client:
        here, elsewhere = new_customer(client, "Erin"), new_customer(client, "Eve")
        for customer in (here, elsewhere):
            name_of(client, customer)
        erased = client.delete(f"/v1/customers/{here}", headers=HEADERS)
        assert erased.status_code == 200, erased.text
        assert client.get(f"/v1/customers/{here}", headers=HEADERS).status_code == 404  # at once
        # Erased through the fleet's gateway process: the erasure event evicts this gateway's entry.
        fleet = httpx.delete(
            f"{real_fleet.gateway}/v1/customers/{elsewhere}", headers={"X-API-Key": real_fleet.admin_key}
        )
        assert fleet.status_code == 200, fleet.text
        wait_until(
            lambda: client.get(f"/v1/customers/{elsewhere}", headers=HEADERS).status_code == 404,
            timeout_s=15,
            what="the erased customer's cached 360 to go",
        )


def test_a_cached_360_still_needs_a_valid_key_with_the_scope_and_within_its_rate(
    real_fleet: RunningFleet, tmp_path: Path
) -> None:
    with fleet_gateway(real_fleet, tmp_path, rate_limit_burst=3.0) as client:
        customer = new_customer(client, "Ada")
        wait_until_cached(real_fleet, client, customer)
        reads = profile_reads(client)
        path = f"/v1/customers/{customer}"
        hit = client.get(path, headers=HEADERS)
        assert hit.status_code == 200
        assert hit.headers["x-request-id"]
        assert profile_reads(client) == reads  # a hit, answered before FastAPI's routing
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-API-Key": "crm_nope_secret"}).status_code == 401
        events_only = make_key(client, Scope.EVENTS_WRITE)
        assert client.get(path, headers={"X-API-Key": events_only}).status_code == 403
        slow = make_key(client, Scope.CUSTOMERS_READ, rate_limit_per_s=0.01)
        statuses = [client.get(path, headers={"X-API-Key": slow}).status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3:] == [429, 429]
        revoked = make_key(client, Scope.CUSTOMERS_READ)
        assert client.get(path, headers={"X-API-Key": revoked}).status_code == 200
        key_id = revoked.split("_")[1]
        assert client.delete(f"/v1/admin/keys/{key_id}", headers=HEADERS).status_code == 200
        assert client.get(path, headers={"X-API-Key": revoked}).status_code == 401
        assert profile_reads(client) == reads
        metrics = client.get("/metrics").text
        assert 'crm_gateway_c360_cache_total{outcome="hit"}' in metrics
        assert 'route="/v1/customers/{customer_id}"' in metrics


def test_concurrent_misses_share_one_fan_out(real_fleet: RunningFleet, tmp_path: Path) -> None:
    with fleet_gateway(real_fleet, tmp_path) as client:
        customer = new_customer(client, "Ada")
        client.app.state.c360_cache.clear()  # type: ignore[attr-defined]
        reads = profile_reads(client)
        with ThreadPoolExecutor(8) as pool:
            with real_fleet.stalled("profile"):
                # Eight readers arrive while the profile service is slow to answer the first.
                pending = [pool.submit(name_of, client, customer) for _ in range(8)]
                time.sleep(0.3)
            names = [p.result() for p in pending]
        assert names == ["Ada"] * 8
        assert profile_reads(client) - reads == 1  # eight concurrent reads, one fan-out
