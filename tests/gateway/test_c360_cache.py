"""The customer 360 cache: repeat reads skip the fan-out, the fleet's events and the gateway's own writes
evict, racing fills are not stored. Real embedded broker, real HTTP stand-ins that count their calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.customer_cache import Customer360Cache, customer_ids_of
from services.gateway.settings import GatewaySettings
from shared.auth import Scope
from shared.contracts import CloudEvent, EventTypeName, Topic
from shared.kafka import EventPublisher
from shared.settings import KafkaSettings
from tests.gateway.conftest import make_settings
from tests.gateway.support import (
    ADMIN_KEY,
    make_key,
    serving,
    stand_in_churn,
    stand_in_recsys,
    stand_in_sentiment,
)

HEADERS = {"X-API-Key": ADMIN_KEY}


class VersionedProfile:
    """A profile stand-in whose answers change on demand and which counts the reads it serves."""

    def __init__(self) -> None:
        self.reads = 0
        self.delay_s = 0.0
        self.names: dict[str, str] = {}
        self.erased: set[str] = set()
        self.app = FastAPI()

        @self.app.get("/customers/{customer_id}")
        async def customer(customer_id: str) -> Any:
            self.reads += 1
            await asyncio.sleep(self.delay_s)
            if customer_id in self.erased:
                return JSONResponse({"error": "CustomerNotFound", "detail": "erased"}, status_code=404)
            return {"customer_id": customer_id, "traits": {"name": self.names.get(customer_id, "Ada")}}

        @self.app.patch("/customers/{customer_id}")
        async def update(customer_id: str, body: dict[str, Any]) -> Any:
            self.names[customer_id] = str(body["traits"]["name"])
            return {"customer_id": customer_id, "traits": {"name": self.names[customer_id]}}


@contextmanager
def gateway(
    kafka_settings: KafkaSettings, tmp_path: Path, **overrides: object
) -> Iterator[tuple[TestClient, VersionedProfile]]:
    profile = VersionedProfile()
    with (
        serving(profile.app) as profile_server,
        serving(stand_in_recsys()) as recsys,
        serving(stand_in_churn()) as churn,
        serving(stand_in_sentiment()) as sentiment,
    ):
        settings: GatewaySettings = make_settings(
            kafka_settings,
            tmp_path,
            profile_url=profile_server.url,
            recsys_url=recsys.url,
            churn_url=churn.url,
            sentiment_url=sentiment.url,
            c360_cache_settle_s=0.2,
            **overrides,
        )
        with TestClient(create_app(settings)) as client:
            cache: Customer360Cache = client.app.state.c360_cache  # type: ignore[attr-defined]
            deadline = time.monotonic() + 30
            while not cache.live:
                assert time.monotonic() < deadline, "the invalidation listener did not start"
                time.sleep(0.05)
            yield client, profile


def name_of(client: TestClient, customer_id: str) -> str:
    response = client.get(f"/v1/customers/{customer_id}", headers=HEADERS)
    assert response.status_code == 200, response.text
    assert response.json()["degraded"] == []
    return str(response.json()["profile"]["traits"]["name"])


def publish(
    kafka_settings: KafkaSettings, topic: Topic, event_type: str, data: dict[str, Any], key: str
) -> None:
    publisher = EventPublisher(kafka_settings)
    try:
        event = CloudEvent.new(event_type, data, source="/test", subject=key)
        publisher.publish_and_wait([(topic.value, event, key)])
    finally:
        publisher.close()


def wait_for_name(client: TestClient, customer_id: str, expected: str) -> None:
    deadline = time.monotonic() + 15
    while name_of(client, customer_id) != expected:
        assert time.monotonic() < deadline, f"the 360 of {customer_id} never showed {expected!r}"
        time.sleep(0.05)


def test_repeat_reads_skip_the_fan_out_until_an_event_about_the_customer(
    kafka_settings: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    customer = f"c-{unique}"
    with gateway(kafka_settings, tmp_path) as (client, profile):
        assert name_of(client, customer) == "Ada"
        reads = profile.reads
        for _ in range(5):
            assert name_of(client, customer) == "Ada"
        assert profile.reads == reads  # served from the cache

        # The profile changes behind the gateway's back; a resolved interaction about the customer
        # (what the profile service publishes after applying one) evicts the cached answer.
        profile.names[customer] = "Grace"
        assert name_of(client, customer) == "Ada"
        publish(
            kafka_settings,
            Topic.INTERACTIONS_RESOLVED,
            EventTypeName.IDENTIFY.value,
            {"customer": {"customer_id": customer}, "traits": {"name": "Grace"}},
            customer,
        )
        wait_for_name(client, customer, "Grace")


def test_erasure_and_merge_events_evict(kafka_settings: KafkaSettings, tmp_path: Path, unique: str) -> None:
    erased, survivor, merged = (f"{n}-{unique}" for n in ("erased", "survivor", "merged"))
    with gateway(kafka_settings, tmp_path) as (client, profile):
        for customer in (erased, survivor):
            assert name_of(client, customer) == "Ada"
        profile.erased.add(erased)
        publish(
            kafka_settings,
            Topic.CUSTOMER_ERASED,
            EventTypeName.CUSTOMER_ERASED.value,
            {"customer_id": erased, "erasure_id": f"e-{unique}"},
            erased,
        )
        deadline = time.monotonic() + 15
        while client.get(f"/v1/customers/{erased}", headers=HEADERS).status_code != 404:
            assert time.monotonic() < deadline, "the erased customer's 360 was still served"
            time.sleep(0.05)

        profile.names[survivor] = "Merged Ada"
        publish(
            kafka_settings,
            Topic.CUSTOMER_MERGED,
            EventTypeName.CUSTOMER_MERGED.value,
            {"merge_id": f"m-{unique}", "survivor_id": survivor, "merged_id": merged},
            # Keyed by the survivor; the listener reads the payload for the merged-away id too.
            survivor,
        )
        wait_for_name(client, survivor, "Merged Ada")


def test_the_gateways_own_writes_evict_at_once(
    kafka_settings: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    customer = f"c-{unique}"
    with gateway(kafka_settings, tmp_path) as (client, _profile):
        assert name_of(client, customer) == "Ada"
        response = client.patch(
            f"/v1/customers/{customer}", json={"traits": {"name": "Grace"}}, headers=HEADERS
        )
        assert response.status_code == 200
        assert name_of(client, customer) == "Grace"  # no waiting: read-your-writes


def test_a_cached_360_still_needs_a_valid_key_with_the_scope_and_within_its_rate(
    kafka_settings: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    customer = f"c-{unique}"
    with gateway(kafka_settings, tmp_path, rate_limit_burst=3.0) as (client, profile):
        assert name_of(client, customer) == "Ada"
        reads = profile.reads
        hit = client.get(f"/v1/customers/{customer}", headers=HEADERS)
        assert hit.status_code == 200
        assert profile.reads == reads  # a hit, answered before FastAPI's routing
        assert hit.headers["x-request-id"]
        path = f"/v1/customers/{customer}"
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
        assert profile.reads == reads
        metrics = client.get("/metrics").text
        assert 'crm_gateway_c360_cache_total{outcome="hit"}' in metrics
        assert 'route="/v1/customers/{customer_id}"' in metrics


def test_a_fill_that_raced_an_event_is_not_stored() -> None:
    cache = Customer360Cache(ttl_s=60, settle_s=0.5, max_entries=2)
    cache.heartbeat()
    started = time.monotonic()
    cache.evict(["c1"])  # an event about c1 while its fan-out was in flight
    assert not cache.put("c1", b"stale", started)
    assert cache.lookup("c1") is None
    assert cache.put("c2", b"fresh", time.monotonic())  # a customer with no event is stored
    assert cache.lookup("c2") == (b"fresh", False)
    cache.stop_serving()  # the event thread stopped: nothing is served, nothing stored
    assert cache.lookup("c2") is None
    assert not cache.put("c3", b"x", time.monotonic())


def test_the_cache_is_bounded() -> None:
    cache = Customer360Cache(ttl_s=60, settle_s=5, max_entries=2)
    cache.heartbeat()
    for customer in ("a", "b", "c"):
        assert cache.put(customer, customer.encode(), time.monotonic())
    assert len(cache) == 2
    assert cache.lookup("a") is None
    assert cache.lookup("c") == (b"c", False)


def test_concurrent_misses_share_one_fan_out_and_old_entries_are_refreshed(
    kafka_settings: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    customer = f"c-{unique}"
    with gateway(kafka_settings, tmp_path, c360_cache_ttl_s=0.5) as (client, profile):
        profile.delay_s = 0.3
        with ThreadPoolExecutor(8) as pool:
            names = list(pool.map(lambda _: name_of(client, customer), range(8)))
        assert names == ["Ada"] * 8
        assert profile.reads == 1  # eight concurrent reads, one fan-out
        # A change no event announces shows once the entry is older than the TTL and got refreshed.
        profile.delay_s = 0.0
        profile.names[customer] = "Grace"
        wait_for_name(client, customer, "Grace")


def test_which_customers_an_event_names() -> None:
    merged = CloudEvent.new(
        EventTypeName.CUSTOMER_MERGED.value,
        {"merge_id": "m1", "survivor_id": "s1", "merged_id": "m2"},
        source="/profile",
    )
    ids = customer_ids_of(Topic.CUSTOMER_MERGED.value, b"s1", merged.to_json_bytes())
    assert set(ids) == {"s1", "m2"}
    assert customer_ids_of(Topic.INTERACTIONS_RESOLVED.value, b"c9", b"not even parsed") == ["c9"]
    assert customer_ids_of(Topic.CUSTOMER_ERASED.value, None, b"{broken") == []
