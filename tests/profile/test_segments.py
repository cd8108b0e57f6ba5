"""Rule segments: validation, evaluation, and membership current right after the event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from services.profile.rules import RuleError, evaluate, parse_duration, validate_rule
from tests.profile.conftest import event, feed

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"field": "revenue", "op": "gte", "value": 100}, True),
        ({"field": "revenue", "op": ">", "value": 150}, False),
        ({"field": "churn_band", "op": "in", "value": ["medium", "high"]}, True),
        ({"field": "traits.city", "op": "eq", "value": "Oslo"}, True),
        ({"field": "traits.missing", "op": "exists"}, False),
        ({"field": "last_seen", "op": "within", "value": "30d"}, True),
        ({"field": "last_seen", "op": "within", "value": "1d"}, False),
        ({"field": "first_seen", "op": "older_than", "value": "1y"}, True),
        (
            {
                "and": [
                    {"field": "orders", "op": "gte", "value": 2},
                    {"not": {"field": "consent.marketing", "op": "eq", "value": False}},
                ]
            },
            True,
        ),
        (
            {
                "or": [
                    {"field": "orders", "op": "lt", "value": 1},
                    {"field": "counts_by_channel.web", "op": "gte", "value": 5},
                ]
            },
            False,
        ),
    ],
)
def test_rule_evaluation(rule: dict, expected: bool) -> None:
    validate_rule(rule)
    facts = {
        "revenue": 150.0, "orders": 3, "churn_band": "high", "traits": {"city": "Oslo"},
        "last_seen": NOW - timedelta(days=3), "first_seen": NOW - timedelta(days=500),
        "consent": {"marketing": True}, "counts_by_channel": {"web": 2},
    }  # fmt: skip
    assert evaluate(rule, facts, NOW) is expected


@pytest.mark.parametrize(
    "rule",
    [
        {"field": "nope", "op": "eq", "value": 1},
        {"field": "revenue", "op": "almost", "value": 1},
        {"field": "revenue", "op": "gte"},
        {"and": []},
        {"field": "last_seen", "op": "within", "value": "soon"},
        {"field": "churn_band", "op": "in", "value": "high"},
    ],
)
def test_invalid_rules_are_rejected(rule: dict) -> None:
    with pytest.raises(RuleError):
        validate_rule(rule)


def test_durations() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration({"weeks": 2}) == timedelta(weeks=2)


def test_membership_is_current_right_after_the_event(client: TestClient, unique: str) -> None:
    cid = f"seg-{unique}"
    now = datetime.now(UTC)
    rule = {
        "and": [
            {"field": "revenue", "op": "gte", "value": 100},
            {"field": "last_seen", "op": "within", "value": "30d"},
        ]
    }
    created = client.post("/segments", json={"name": f"big-recent-{unique}", "rule": rule})
    assert created.status_code == 201
    segment = created.json()

    def members() -> set[str]:
        return {
            c["id"]
            for c in client.get(f"/segments/{segment['id']}/members", params={"limit": 500}).json()["items"]
        }

    out = feed(
        client,
        [event("purchase", {"customer": {"customer_id": cid}, "order_id": "1", "amount": 60.0}, at=now)],
    )
    assert cid not in members()
    assert not [e for topic, e, _ in out if topic == "crm.segment.membership_changed.v1"]

    out = feed(
        client,
        [event("purchase", {"customer": {"customer_id": cid}, "order_id": "2", "amount": 50.0}, at=now)],
    )
    assert cid in members(), "member as soon as the event that crosses the threshold is applied"
    changes = [e.data for topic, e, _ in out if topic == "crm.segment.membership_changed.v1"]
    assert changes == [
        {"customer_id": cid, "segment_id": segment["id"], "segment_name": segment["name"], "joined": True}
    ]
    assert segment["name"] in client.get(f"/customers/{cid}").json()["segments"]
    assert cid in {
        c["id"] for c in client.get("/customers", params={"segment_id": segment["id"]}).json()["items"]
    }

    # A rule change re-evaluates everyone: the customer leaves and that is announced.
    patched = client.patch(
        f"/segments/{segment['id']}", json={"rule": {"field": "revenue", "op": "gte", "value": 1000}}
    )
    assert patched.status_code == 200
    assert cid not in members()

    # Patching the profile re-evaluates too.
    vip = client.post(
        "/segments",
        json={"name": f"vip-{unique}", "rule": {"field": "traits.vip", "op": "eq", "value": True}},
    )
    assert cid not in {c["id"] for c in client.get(f"/segments/{vip.json()['id']}/members").json()["items"]}
    client.patch(f"/customers/{cid}", json={"traits": {"vip": True}})
    assert cid in {c["id"] for c in client.get(f"/segments/{vip.json()['id']}/members").json()["items"]}
    assert client.delete(f"/segments/{vip.json()['id']}").status_code == 204
    assert client.get(f"/segments/{vip.json()['id']}").status_code == 404


def test_time_windows_are_refreshed_without_events(store, unique: str) -> None:  # type: ignore[no-untyped-def]
    import time

    from services.profile.batch import BatchScheduler, uses_time_window
    from services.profile.settings import ProfileSettings

    rule = {"field": "last_seen", "op": "within", "value": 1.5 / 86400}  # 1.5 seconds, in days
    assert uses_time_window({"and": [{"field": "orders", "op": "gt", "value": 0}, rule]})
    assert not uses_time_window({"field": "orders", "op": "gt", "value": 0})
    with store.factory() as session, session.begin():
        segment, _ = store.service.create_segment(session, f"just-now-{unique}", rule, None)
    cid = f"tw-{unique}"
    out = store.apply([event("product_view", {"customer": {"customer_id": cid}, "item_id": "x"})])
    assert [e.data["joined"] for topic, e, _ in out if topic == "crm.segment.membership_changed.v1"] == [True]
    time.sleep(2)
    scheduler = BatchScheduler(store.factory, ProfileSettings(), store.service)
    assert scheduler.refresh_time_windows() == 1, "the customer left when the window moved past them"
    with store.factory() as session:
        from services.profile import repository as repo

        assert cid not in repo.segment_member_ids(session, segment.id)


def test_openapi_lists_the_stable_paths(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {
        "/customers", "/customers/lookup", "/customers/{customer_id}", "/customers/{customer_id}/timeline",
        "/customers/{customer_id}/export", "/merges", "/merges/{merge_id}/undo", "/segments",
        "/segments/{segment_id}", "/segments/{segment_id}/members", "/models",
    } <= paths  # fmt: skip
