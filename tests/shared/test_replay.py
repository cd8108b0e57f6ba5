"""Replay turns the real data sets into valid, deterministic, time-ordered events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from shared.contracts import EventTypeName, Topic, payload_model
from shared.contracts.catalog import ItemUpdated
from shared.datasets import cdnow_transactions, movielens_ratings
from shared.replay import cdnow_events, movielens_catalog_events, movielens_events


def test_movielens_slice_has_one_identify_per_user_and_every_rating_in_time_order() -> None:
    users = {"1", "2", "3"}
    events = list(movielens_events(users=users))
    expected = Counter(f"ml-{r.user_id}" for r in movielens_ratings() if r.user_id in users)
    ratings = [e for e in events if e.event.type == EventTypeName.RATING]
    identifies = [e for e in events if e.event.type == EventTypeName.IDENTIFY]
    assert Counter(e.key for e in ratings) == expected
    assert sorted(e.key for e in identifies) == ["ml-1", "ml-2", "ml-3"]
    times = [e.event.time for e in events]
    assert times == sorted(times)
    for item in events[:50]:
        model = payload_model(item.event.type)
        assert model is not None
        model.model_validate(item.event.data)
    # Identify precedes the user's first rating, with demographics as traits.
    first = next(e for e in events if e.key == "ml-1")
    assert first.event.type == EventTypeName.IDENTIFY
    assert set(first.event.data["traits"]) == {"age", "gender", "occupation", "zip_code"}


def test_replay_ids_are_deterministic_and_cdnow_amounts_are_kept() -> None:
    first = [e.event.id for e in movielens_events(users={"5"})]
    again = [e.event.id for e in movielens_events(users={"5"})]
    assert first == again
    assert len(set(first)) == len(first)
    events = list(cdnow_events(sample=True))
    assert len(events) == len(cdnow_transactions(sample=True)) == 6919
    assert len({e.event.id for e in events}) == len(events)
    total = sum(e.event.data["amount"] for e in events)
    assert abs(total - sum(t.amount for t in cdnow_transactions(sample=True))) < 0.01


def test_with_now_the_newest_event_lands_in_the_day_before_it_and_ids_do_not_move() -> None:
    now = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    for original, shifted in (
        (list(movielens_events(users={"5", "13"})), list(movielens_events(users={"5", "13"}, now=now))),
        (list(cdnow_events(sample=True)), list(cdnow_events(sample=True, now=now))),
    ):
        assert [e.event.id for e in shifted] == [e.event.id for e in original]  # a replay is the same events
        shifts = {s.event.time - o.event.time for o, s in zip(original, shifted, strict=True)}
        assert len(shifts) == 1  # one shift for the whole data set: gaps between events are kept
        [shift] = shifts
        assert shift % timedelta(days=1) == timedelta(0)  # whole days: dates and times of day are kept
    assert now - timedelta(days=1) < max(e.event.time for e in cdnow_events(sample=True, now=now)) <= now
    newest_rating = max(
        e.event.time for e in movielens_events(now=now) if e.event.type == EventTypeName.RATING
    )
    assert now - timedelta(days=1) < newest_rating <= now


def test_the_movielens_catalog_names_every_movie_before_the_first_rating() -> None:
    now = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    items = list(movielens_catalog_events(now=now))
    assert len(items) == 1682
    assert {e.topic for e in items} == {Topic.ITEM_UPDATED}
    by_id = {e.key: ItemUpdated.model_validate(e.event.data) for e in items}
    assert by_id["movie-1"].name == "Toy Story (1995)"
    assert by_id["movie-1"].categories == ["Animation", "Children's", "Comedy"]
    assert by_id["movie-1"].attributes == {"year": 1995}
    assert by_id["movie-267"].name == "unknown movie 267"  # the data set's one untitled movie
    assert by_id["movie-267"].categories == []
    first_rating = min(
        e.event.time for e in movielens_events(now=now) if e.event.type == EventTypeName.RATING
    )
    assert all(e.event.time < first_rating for e in items)
