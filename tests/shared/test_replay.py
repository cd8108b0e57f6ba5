"""Replay turns the real data sets into valid, deterministic, time-ordered events."""

from __future__ import annotations

from collections import Counter

from shared.contracts import EventTypeName, payload_model
from shared.datasets import cdnow_transactions, movielens_ratings
from shared.replay import cdnow_events, movielens_events


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
