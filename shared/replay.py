"""Replay real data sets as CloudEvents into Kafka, in time order, at a chosen rate.

This is how ``crm up`` loads demo data and what the benchmarks drive the fleet with. Event ids are
derived from the source rows, so replaying twice applies nothing twice.

* MovieLens 100k: each user becomes an identify event (demographics as traits) at their first rating;
  each rating a ``crm.rating.v1`` event (optionally preceded by a ``crm.product_view.v1``).
* CDNOW: each transaction a ``crm.purchase.v1`` event with its amount (the data names no items).
* The MovieLens catalog (``u.item``): one ``crm.item_updated.v1`` per movie (title, year, genres).

One clock: the fleet measures recency, churn and CLV against the wall clock, as a live shop does. Given
``now``, a replay shifts every event of a data set by the same whole number of days so that the data set's
newest event lands within the day before ``now`` (``crm up`` does this for the demo). Ids are derived from
the source rows, not the shifted times, so a later replay is still recognised as the same events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tqdm import tqdm

from shared.contracts import CloudEvent, EventTypeName, Topic, stable_event_id
from shared.contracts.catalog import ItemUpdated
from shared.contracts.events import CustomerRef, Identify, ProductView, Purchase, Rating
from shared.datasets import cdnow_transactions, movielens_items, movielens_ratings, movielens_users
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


def time_shift(newest: datetime, now: datetime | None) -> timedelta:
    """Whole days that move ``newest`` to within the day before ``now`` (zero when ``now`` is None).

    Whole days keep each event's time of day and weekday, and every purchase on its own calendar day."""
    if now is None:
        return timedelta(0)
    return timedelta(days=(now - newest) // timedelta(days=1))


def movielens_newest() -> datetime:
    """The time of the newest MovieLens rating: the data set's "now"."""
    return max(r.time for r in movielens_ratings())


def cdnow_newest(sample: bool = False) -> datetime:
    """Noon of the newest CDNOW purchase day (purchases are replayed at noon)."""
    day = max(t.day for t in cdnow_transactions(sample))
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def movielens_events(
    *, users: Iterable[str] | None = None, with_views: bool = False, now: datetime | None = None
) -> Iterator[ReplayEvent]:
    """Identify + rating (+ view) events for the chosen MovieLens user ids (all when None), time-ordered;
    with ``now``, shifted so that the data set's newest rating lands just before it."""
    shift = time_shift(movielens_newest(), now)
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
        at = rating.time  # ids come from the source row's own time; the event carries the shifted one
        when = at + shift
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
                    time=when - timedelta(seconds=1),
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
                    time=when,
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
                time=when,
            ),
            customer_id,
        )


def movielens_catalog_events(*, now: datetime | None = None) -> Iterator[ReplayEvent]:
    """One ``crm.item_updated.v1`` per MovieLens movie (title with year, genres), dated the day before the
    first rating (shifted like :func:`movielens_events` with the same ``now``), so the catalog comes first."""
    first = min(r.time for r in movielens_ratings())
    at = first - timedelta(days=1)
    when = at + time_shift(movielens_newest(), now)
    for movie in movielens_items():
        item_id = movielens_item_id(movie.item_id)
        # ml-100k spells its one untitled movie "unkonwn", with "unknown" as its only genre.
        known = movie.title not in {"unkonwn", "unknown"}
        year = movie.year if movie.year.isdigit() else None
        name = (
            (f"{movie.title} ({year})" if year else movie.title)
            if known
            else f"unknown movie {movie.item_id}"
        )
        yield ReplayEvent(
            Topic.ITEM_UPDATED,
            CloudEvent.new(
                EventTypeName.ITEM_UPDATED,
                ItemUpdated(
                    item_id=item_id,
                    name=name,
                    categories=[g for g in movie.genres if g != "unknown"],
                    attributes={"year": int(year)} if year else {},
                ),
                source=SOURCE_MOVIELENS,
                id=stable_event_id("movielens", "item", movie.item_id, at=at),
                time=when,
            ),
            item_id,
        )


def cdnow_events(
    *, sample: bool = False, customers: Iterable[str] | None = None, now: datetime | None = None
) -> Iterator[ReplayEvent]:
    """One purchase event per CDNOW transaction, time-ordered (the file is per customer); with ``now``,
    shifted so that the data set's newest purchase lands just before it."""
    shift = time_shift(cdnow_newest(sample), now)
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
                time=at + shift,
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
