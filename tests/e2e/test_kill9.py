"""kill -9: every consumer process of the fleet is killed at random moments while real events stream in,
and restarted; nothing is lost, nothing is applied twice, nothing is dead-lettered because of a crash.

The ground truth is computed from the source files (MovieLens ratings, CDNOW transactions), not from the
replay code, and compared with what the profile, the recommender and churn hold at the end.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from shared.contracts import Topic
from shared.datasets import cdnow_transactions, movielens_ratings
from shared.kafka import ensure_topics
from shared.replay import cdnow_customer_id, cdnow_events, movielens_customer_id, movielens_events, replay
from shared.settings import KafkaSettings
from tests.fleet_support import (
    DEMO_CDNOW_CUSTOMERS,
    DEMO_MOVIELENS_USERS,
    RunningFleet,
    cdnow_customers_slice,
    movielens_users_slice,
    wait_until,
)

pytestmark = pytest.mark.slow

SEED = 20261204
KILLS_PER_SERVICE = 3
# Customers the session's demo slice does not hold yet: about 20,000 events between them.
MOVIELENS_USERS = movielens_users_slice(DEMO_MOVIELENS_USERS + 1, DEMO_MOVIELENS_USERS + 131)
CDNOW_CUSTOMERS = cdnow_customers_slice(DEMO_CDNOW_CUSTOMERS, DEMO_CDNOW_CUSTOMERS + 1200)
PUBLISH_RATE = 250.0  # events/s: the stream outlasts the kills


def dead_letters(bootstrap: str, event_ids: set[str]) -> list[tuple[str, str]]:
    """(event id, reason) of every dead-lettered record of ours on the fleet's dead-letter topics."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    found = []
    try:
        topics = [t for t in consumer.topics() if t.endswith(".dlq")]
        partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for message in consumer:
            try:
                event_id = json.loads(message.value).get("id")
            except (ValueError, AttributeError, TypeError):
                continue
            if event_id in event_ids:
                reason = dict(message.headers or []).get("crm-dlq-reason", b"").decode()
                found.append((event_id, reason))
    finally:
        consumer.close()
    return found


def test_kill_minus_9_loses_nothing(real_fleet: RunningFleet) -> None:
    events = [*movielens_events(users=MOVIELENS_USERS), *cdnow_events(sample=True, customers=CDNOW_CUSTOMERS)]
    assert len(events) >= 20_000 // 2  # with the session's demo slice, more than 20,000 real events in all
    ids = {e.event.id for e in events}
    ensure_topics(KafkaSettings(bootstrap=real_fleet.bootstrap), [Topic.INTERACTIONS])

    published: list[int] = []

    def publish() -> None:
        publisher = real_fleet.publisher()
        try:
            published.append(replay(events, publisher, rate=PUBLISH_RATE, progress=False))
        finally:
            publisher.close()

    streaming = threading.Thread(target=publish, name="kill9-replay")
    streaming.start()
    rng = random.Random(SEED)
    services = list(real_fleet.fleet.services)
    schedule = [s for _ in range(KILLS_PER_SERVICE) for s in rng.sample(services, len(services))]
    print(f"kill -9 schedule (seed {SEED}): {' '.join(schedule)}")
    kills: Counter[str] = Counter()
    try:
        for service in schedule:
            time.sleep(rng.uniform(0.2, 2.0))
            real_fleet.kill_and_restart(service)
            kills[service] += 1
    finally:
        streaming.join(timeout=600)
    assert published == [len(events)]
    assert all(kills[s] >= KILLS_PER_SERVICE for s in services)

    # Ground truth from the source files.
    ratings: dict[str, list[str]] = defaultdict(list)
    for r in movielens_ratings():
        if r.user_id in set(MOVIELENS_USERS):
            ratings[movielens_customer_id(r.user_id)].append(r.item_id)
    orders: dict[str, list[float]] = defaultdict(list)
    for t in cdnow_transactions(True):
        if t.customer_id in set(CDNOW_CUSTOMERS):
            orders[cdnow_customer_id(t.customer_id)].append(t.amount)

    profile = real_fleet.url_of("profile")
    headers = real_fleet.internal_headers()
    with httpx.Client(headers=headers, timeout=30) as client:

        def profile_of(customer: str) -> dict[str, object] | None:
            response = client.get(f"{profile}/customers/{customer}")
            return response.json()["aggregates"] if response.status_code == 200 else None

        def all_applied() -> bool:
            for customer, items in ratings.items():
                aggregates = profile_of(customer)
                if aggregates is None or aggregates["rating_count"] != len(items):
                    return False
            return True

        wait_until(all_applied, timeout_s=300, interval_s=2, what="every rating to reach the profile")
        for customer, items in ratings.items():
            aggregates = profile_of(customer)
            assert aggregates is not None
            assert aggregates["rating_count"] == len(items), customer
            assert aggregates["counts_by_type"] == {"identify": 1, "rating": len(items)}, customer
        for customer, amounts in orders.items():
            aggregates = profile_of(customer)
            assert aggregates is not None, customer
            assert aggregates["orders"] == len(amounts), customer
            assert aggregates["revenue"] == pytest.approx(sum(amounts), abs=1e-6), customer

        # The recommender and churn hold every customer's last events too.
        recsys, churn = real_fleet.url_of("recsys"), real_fleet.url_of("churn")
        for customer, items in ratings.items():
            recs = client.get(f"{recsys}/recommendations/{customer}").json()
            assert recs["history_size"] == len(set(items)), customer
            scored = client.get(f"{churn}/churn/{customer}").json()
            assert scored["has_history"] is True, customer
        for customer in orders:
            assert client.get(f"{churn}/churn/{customer}").json()["has_history"] is True, customer

    crashed = dead_letters(real_fleet.bootstrap, ids)
    assert crashed == [], f"dead-lettered because of the crashes: {crashed[:5]}"
    print(
        f"kill -9: {len(events)} events replayed, {sum(kills.values())} kills "
        f"({dict(kills)}), {len(crashed)} dead-lettered"
    )
