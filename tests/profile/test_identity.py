"""Identity resolution, aggregates, deterministic ids and merges at the service level."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.profile.conftest import Store, event

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_known_identifiers_attach_events_to_one_profile(store: Store, unique: str) -> None:
    anon, user, email = f"dev-{unique}", f"u-{unique}", f"Ann.{unique}@Example.com"
    out = store.apply(
        [
            event(
                "product_view", {"customer": {"anonymous_id": anon}, "item_id": "i1", "channel": "web"}, at=T0
            ),
            event(
                "identify",
                {
                    "customer": {"anonymous_id": anon, "customer_id": user, "email": email},
                    "traits": {"name": "Ann"},
                },
                at=T0 + timedelta(minutes=1),
            ),
            event(
                "purchase",
                {"customer": {"email": email.lower()}, "order_id": "o1", "amount": 30.5, "channel": "web"},
                at=T0 + timedelta(minutes=2),
            ),
            event(
                "purchase",
                {"customer": {"customer_id": user}, "order_id": "o2", "amount": 10.0, "channel": "store"},
                at=T0 + timedelta(days=3),
            ),
            event(
                "rating",
                {"customer": {"customer_id": user}, "item_id": "i1", "rating": 4},
                at=T0 + timedelta(days=4),
            ),
        ]
    )
    resolved = [json.loads(e) for topic, e, _ in out if topic == "crm.interactions.resolved.v1"]
    subjects = {e["subject"] for e in resolved}
    assert len(subjects) == 1, "every event resolves to the same canonical id"
    (canonical,) = subjects
    assert canonical.startswith("cus_"), "the first event had only an anonymous id"
    with store.factory() as session:
        row = store.service.active_row(session, canonical)
        view = store.service.full_view(session, row)
        assert store.service.lookup(session, "email", email.upper()) == canonical
        assert store.service.lookup(session, "customer_id", user) == canonical
        # A customer_id known as an identifier resolves on GET as well.
        assert store.service.active_row(session, user)["id"] == canonical
    agg = view.aggregates
    assert (agg.event_count, agg.orders, agg.revenue) == (5, 2, 40.5)
    assert agg.average_order_value == 20.25
    assert agg.counts_by_type == {"product_view": 1, "identify": 1, "purchase": 2, "rating": 1}
    assert agg.counts_by_channel == {"web": 2, "store": 1}
    assert agg.average_rating == 4.0
    assert view.first_seen == T0
    assert view.last_seen == T0 + timedelta(days=4)
    assert view.email == email
    assert view.traits == {"name": "Ann"}
    assert sorted(view.identifier_kinds) == ["anonymous_id", "customer_id", "email"]
    # Resolved events are republished unchanged but for the subject.
    assert resolved[0]["data"]["customer"] == {"anonymous_id": anon}
    assert resolved[0]["type"] == "crm.product_view.v1"
    assert [e["subject"] for e in resolved] == [canonical] * 5


def test_new_customer_ids_are_deterministic(database_url: str, tmp_path, unique: str) -> None:
    events = [
        event(
            "product_view",
            {"customer": {"email": f"x{unique}@e.com"}, "item_id": "a"},
            at=T0,
            id=f"a{unique}",
        ),
        event(
            "product_view",
            {"customer": {"customer_id": f"c{unique}"}, "item_id": "a"},
            at=T0,
            id=f"b{unique}",
        ),
    ]
    stores = [Store(database_url), Store(f"sqlite:///{tmp_path}/other.db")]
    try:
        first, second = ([json.loads(e)["subject"] for _, e, _ in s.apply(events)] for s in stores)
    finally:
        for s in stores:
            s.engine.dispose()
    assert first == second
    assert first[1] == f"c{unique}", "a given customer_id is the canonical id"


def test_identify_linking_two_profiles_merges_into_the_older(store: Store, unique: str) -> None:
    old, new = f"old-{unique}", f"new-{unique}"
    store.apply(
        [
            event(
                "identify", {"customer": {"customer_id": old}, "traits": {"city": "Oslo", "age": None}}, at=T0
            ),
            event("purchase", {"customer": {"customer_id": old}, "order_id": "1", "amount": 5.0}, at=T0),
            event(
                "identify",
                {"customer": {"anonymous_id": new}, "traits": {"city": "Rome", "age": 41}},
                at=T0 + timedelta(days=1),
            ),
            event(
                "purchase",
                {"customer": {"anonymous_id": new}, "order_id": "2", "amount": 7.0},
                at=T0 + timedelta(days=2),
            ),
        ]
    )
    out = store.apply(
        [
            event(
                "identify", {"customer": {"customer_id": old, "anonymous_id": new}}, at=T0 + timedelta(days=3)
            )
        ]
    )
    merged = [e for topic, e, _ in out if topic == "crm.customer.merged.v1"]
    assert len(merged) == 1
    assert merged[0].data["survivor_id"] == old
    with store.factory() as session:
        view = store.service.full_view(session, store.service.active_row(session, old))
        assert store.service.lookup(session, "anonymous_id", new) == old
    assert view.traits == {"city": "Oslo", "age": 41}, "survivor wins unless its value is missing"
    assert (view.aggregates.orders, view.aggregates.revenue, view.aggregates.event_count) == (2, 12.0, 5)
    assert view.first_seen == T0
    assert json.loads(out[-1][1])["subject"] == old


def test_dry_run_leaves_every_table_unchanged(store: Store, unique: str) -> None:
    a, b = f"dra-{unique}", f"drb-{unique}"
    store.apply(
        [
            event(
                "identify", {"customer": {"customer_id": a, "email": f"{a}@x.org"}, "traits": {"k": 1}}, at=T0
            ),
            event("purchase", {"customer": {"customer_id": b}, "order_id": "1", "amount": 9.0}, at=T0),
        ]
    )
    before = store.dump()
    with store.factory() as session, session.begin():
        outcome = store.service.merge(session, a, b, dry_run=True, reason="test")
    assert outcome.result.status == "preview"
    assert outcome.outbound == []
    assert outcome.result.profile is not None
    assert outcome.result.profile.aggregates.orders == 1
    assert store.dump() == before
