"""Replay real data sets as CloudEvents into Kafka, in time order, at a chosen rate.

This is how ``crm up`` loads demo data and what the benchmarks drive the fleet with. Event ids are
derived from the source rows, so replaying twice applies nothing twice.

* MovieLens 100k: each user becomes an identify event (demographics as traits) at their first rating;
  each rating a ``crm.rating.v1`` event (optionally preceded by a ``crm.product_view.v1``).
* CDNOW: each transaction a ``crm.purchase.v1`` event with its amount (the data names no items).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tqdm import tqdm

from shared.contracts import CloudEvent, EventTypeName, Topic, stable_event_id
from shared.contracts.events import CustomerRef, Identify, ProductView, Purchase, Rating
from shared.datasets import cdnow_transactions, movielens_ratings, movielens_users
from shared.kafka import EventPublisher

SOURCE_MOVIELENS = "/replay/movielens-100k"
SOURCE_CDNOW = "/replay/cdnow"


def movielens_customer_id(user_id: str) -> str:
    return f"ml-{user_id}"


def movielens_item_id(item_id: str) -> str:
    return f"movie-{item_id}"


def cdnow_customer_id(customer_id: str) -> str:
    return f"cdnow-{customer_id}"


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    topic: str
    event: CloudEvent
    key: str


def movielens_events(
    *, users: Iterable[str] | None = None, with_views: bool = False
) -> Iterator[ReplayEvent]:
    """Identify + rating (+ view) events for the chosen MovieLens user ids (all when None), time-ordered."""
    wanted = set(users) if users is not None else None
    ratings = sorted(
        (r for r in movielens_ratings() if wanted is None or r.user_id in wanted),
        key=lambda r: (r.timestamp, r.user_id, r.item_id),
    )
    people = {u.user_id: u for u in movielens_users()}
    identified: set[str] = set()
    for rating in ratings:
        customer_id = movielens_customer_id(rating.user_id)
        customer = CustomerRef(customer_id=customer_id)
        at = rating.time
        if rating.user_id not in identified:
            identified.add(rating.user_id)
            person = people.get(rating.user_id)
            traits = (
                {
                    "age": person.age,
                    "gender": person.gender,
                    "occupation": person.occupation,
                    "zip_code": person.zip_code,
                }
                if person
                else {}
            )
            yield ReplayEvent(
                Topic.INTERACTIONS,
                CloudEvent.new(
                    EventTypeName.IDENTIFY,
                    Identify(customer=customer, channel="web", traits=traits),
                    source=SOURCE_MOVIELENS,
                    id=stable_event_id("movielens", "identify", rating.user_id, at=at - timedelta(seconds=1)),
                    time=at - timedelta(seconds=1),
                ),
                customer_id,
            )
        item_id = movielens_item_id(rating.item_id)
        if with_views:
            yield ReplayEvent(
                Topic.INTERACTIONS,
                CloudEvent.new(
                    EventTypeName.PRODUCT_VIEW,
                    ProductView(customer=customer, channel="web", item_id=item_id),
                    source=SOURCE_MOVIELENS,
                    id=stable_event_id(
                        "movielens", "view", rating.user_id, rating.item_id, rating.timestamp, at=at
                    ),
                    time=at,
                ),
                customer_id,
            )
        yield ReplayEvent(
            Topic.INTERACTIONS,
            CloudEvent.new(
                EventTypeName.RATING,
                Rating(customer=customer, channel="web", item_id=item_id, rating=rating.rating),
                source=SOURCE_MOVIELENS,
                id=stable_event_id(
                    "movielens", "rating", rating.user_id, rating.item_id, rating.timestamp, at=at
                ),
                time=at,
            ),
            customer_id,
        )


def cdnow_events(*, sample: bool = False, customers: Iterable[str] | None = None) -> Iterator[ReplayEvent]:
    """One purchase event per CDNOW transaction, time-ordered (the file is per customer)."""
    wanted = set(customers) if customers is not None else None
    rows = [t for t in cdnow_transactions(sample) if wanted is None or t.customer_id in wanted]
    order_number: dict[tuple[str, str], int] = {}
    keyed = []
    for row in rows:
        day_key = row.day.strftime("%Y%m%d")
        n = order_number.get((row.customer_id, day_key), 0)
        order_number[(row.customer_id, day_key)] = n + 1
        keyed.append((row.day, row.customer_id, n, row))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    for day, customer, n, row in keyed:
        customer_id = cdnow_customer_id(customer)
        order_id = f"cdnow-{customer}-{day:%Y%m%d}-{n}"
        at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        yield ReplayEvent(
            Topic.INTERACTIONS,
            CloudEvent.new(
                EventTypeName.PURCHASE,
                Purchase(
                    customer=CustomerRef(customer_id=customer_id),
                    channel="store",
                    order_id=order_id,
                    # CDNOW records how many CDs an order had, not which: no line items, so no
                    # made-up item ends up in anyone's recommendations.
                    items=[],
                    amount=row.amount,
                    currency="USD",
                ),
                source=SOURCE_CDNOW,
                id=stable_event_id("cdnow", order_id, at=at),
                time=at,
            ),
            customer_id,
        )


def replay(
    events: Iterable[ReplayEvent],
    publisher: EventPublisher,
    *,
    rate: float | None = None,
    total: int | None = None,
    progress: bool = True,
    description: str = "replay",
    stop: threading.Event | None = None,
) -> int:
    """Publish events at up to ``rate`` events/s (None: as fast as the broker takes them).
    Returns the count once every event is acknowledged."""
    sent = 0
    started = time.perf_counter()
    bar = tqdm(total=total, unit="ev", desc=description, disable=not progress, smoothing=0.1)
    try:
        for item in events:
            if stop is not None and stop.is_set():
                break
            publisher.publish(item.topic, item.event, item.key)
            sent += 1
            if sent % 200 == 0:
                bar.update(200)
                if rate:
                    ahead = sent / rate - (time.perf_counter() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        publisher.flush()
        bar.update(sent % 200)
    finally:
        bar.close()
    return sent
