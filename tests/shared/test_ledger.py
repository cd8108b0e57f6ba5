"""The processed-event ledger on SQLite and PostgreSQL: which ids are new, exactly once, even when two
members of a consumer group claim the same id at the same moment."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from shared.contracts import new_event_id
from shared.db import EventLedger, make_engine


def test_claim_returns_only_ids_never_claimed_by_the_group(database_url: str) -> None:
    engine = make_engine(database_url)
    ledger, other_group = EventLedger(engine, "group-a"), EventLedger(engine, "group-b")
    first = [new_event_id() for _ in range(3)]
    with ledger.session_factory() as session, session.begin():
        assert ledger.claim(session, [*first, first[0]]) == set(first)  # an id twice counts once
    later = new_event_id()
    with ledger.session_factory() as session, session.begin():
        assert ledger.claim(session, [first[1], later, "an-older-random-id"]) == {later, "an-older-random-id"}
    with ledger.session_factory() as session, session.begin():
        assert other_group.claim(session, first) == set(first)  # groups keep separate books
    assert ledger.count() == 5
    engine.dispose()


def test_a_rolled_back_claim_is_forgotten(database_url: str) -> None:
    engine = make_engine(database_url)
    ledger = EventLedger(engine, "group")
    ids = [new_event_id() for _ in range(6000)]  # more than one INSERT's worth
    session = ledger.session_factory()
    session.begin()
    assert ledger.claim(session, ids) == set(ids)
    session.rollback()
    session.close()
    assert ledger.count() == 0
    with ledger.session_factory() as session, session.begin():
        assert ledger.claim(session, ids) == set(ids)
    assert ledger.count() == 6000
    engine.dispose()


def test_two_members_claiming_the_same_id_at_once_apply_it_once(database_url: str) -> None:
    engine = make_engine(database_url)
    ledger = EventLedger(engine, "group")
    event_id = new_event_id()
    results: list[set[str]] = []
    first_claimed, second_started = threading.Event(), threading.Event()

    def member(first: bool) -> None:
        with ledger.session_factory() as session, session.begin():
            if not first:
                first_claimed.wait(10)
                second_started.set()
            results.append(ledger.claim(session, [event_id]))
            if first:
                first_claimed.set()
                second_started.wait(10)  # the other member is claiming while this one is uncommitted

    threads = [threading.Thread(target=member, args=(flag,)) for flag in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(len(r) for r in results) == [0, 1]
    assert ledger.count() == 1
    engine.dispose()


def test_forget_before_deletes_only_the_groups_ids_recorded_before_the_cutoff(database_url: str) -> None:
    engine = make_engine(database_url)
    ledger, other_group = EventLedger(engine, "group"), EventLedger(engine, "other-group")
    old = [new_event_id() for _ in range(12)]
    with ledger.session_factory() as session, session.begin():
        ledger.claim(session, old)
    with other_group.session_factory() as session, session.begin():
        other_group.claim(session, old)
    cutoff = datetime.now(UTC)
    recent = [new_event_id() for _ in range(3)]
    with ledger.session_factory() as session, session.begin():
        ledger.claim(session, recent)

    assert ledger.forget_before(cutoff, chunk=5) == 12  # three chunks: 5, 5, 2
    assert ledger.count() == 3
    assert other_group.count() == 12  # groups keep separate books
    with ledger.session_factory() as session, session.begin():
        # A forgotten id counts as new again; a recent one is still a duplicate.
        assert ledger.claim(session, [old[0], recent[0]]) == {old[0]}
    assert ledger.forget_before(cutoff) == 0
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.forget_before(cutoff.replace(tzinfo=None))
    engine.dispose()
