"""The customer 360 cache on its own: racing fills are not stored, it is bounded, and which customers
an event names. Its behaviour in front of the real fleet is in test_c360_cache_fleet.py."""

from __future__ import annotations

import time

from services.gateway.customer_cache import Customer360Cache, customer_ids_of
from shared.contracts import CloudEvent, EventTypeName, Topic


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
