"""The REST API: profiles, timeline paging, lookup, merges with dry run and undo, error shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.profile.conftest import event, feed

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _state(client: TestClient, *ids: str) -> dict[str, object]:
    """Everything the API shows about some customers (profile, full timeline, export)."""
    out: dict[str, object] = {}
    for cid in ids:
        profile = client.get(f"/customers/{cid}").json()
        export = client.get(f"/customers/{cid}/export").json()
        for view in (profile, export["profile"]):
            view["rfm"].pop("recency_days")  # moves with the wall clock
        out[cid] = {
            "profile": profile,
            "timeline": client.get(f"/customers/{cid}/timeline", params={"limit": 500}).json(),
            # The merge history (an audit record that the merge happened and was undone) is left out.
            "export": {k: v for k, v in export.items() if k not in {"exported_at", "merges"}},
        }
    return out


def _two_profiles(client: TestClient, unique: str) -> tuple[str, str]:
    a, b = f"a-{unique}", f"b-{unique}"
    feed(
        client,
        [
            event(
                "identify",
                {"customer": {"customer_id": a, "email": f"{a}@x.org"}, "traits": {"tier": "gold"}},
                at=T0,
            ),
            event("purchase", {"customer": {"customer_id": a}, "order_id": "1", "amount": 20.0}, at=T0),
            event(
                "identify",
                {
                    "customer": {"customer_id": b, "phone": "+47 555 0101"},
                    "traits": {"tier": "basic", "city": "Bergen"},
                },
                at=T0 + timedelta(hours=1),
            ),
            event(
                "rating",
                {"customer": {"customer_id": b}, "item_id": "m1", "rating": 2},
                at=T0 + timedelta(hours=2),
            ),
        ],
    )
    return a, b


def test_profile_timeline_and_lookup(client: TestClient, unique: str) -> None:
    cid = f"t-{unique}"
    feed(
        client,
        [
            event(
                "product_view",
                {"customer": {"customer_id": cid, "email": f"{cid}@x.org"}, "item_id": f"i{n}"},
                at=T0 + timedelta(minutes=n),
            )
            for n in range(7)
        ],
    )
    body = client.get(f"/customers/{cid}").json()
    assert body["aggregates"]["counts_by_type"] == {"product_view": 7}
    assert body["email"] == f"{cid}@x.org"
    seen, cursor = [], None
    while True:
        page = client.get(
            f"/customers/{cid}/timeline", params={"limit": 3, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200
        seen += [item["details"]["item_id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"i{n}" for n in reversed(range(7))], "newest first, every entry once"
    found = client.get("/customers/lookup", params={"type": "email", "value": f"{cid.upper()}@X.ORG"})
    assert found.json() == {"customer_id": cid, "matched": "email"}
    listing = client.get("/customers", params={"sort": "id", "order": "asc", "limit": 500}).json()
    assert cid in [c["id"] for c in listing["items"]]


def test_errors_have_the_one_shape(client: TestClient) -> None:
    missing = client.get("/customers/nobody-at-all")
    assert missing.status_code == 404
    assert missing.json()["error"] == "CustomerNotFound"
    assert missing.json()["request_id"]
    bad = client.get("/customers", params={"limit": 0})
    assert bad.status_code == 422
    assert bad.json()["error"] == "InvalidRequest"
    bad_rule = client.post(
        "/segments", json={"name": "x", "rule": {"field": "revenue", "op": "about", "value": 1}}
    )
    assert bad_rule.status_code == 422
    assert bad_rule.json()["error"] == "InvalidSegmentRule"


def test_dry_run_changes_nothing(client: TestClient, unique: str) -> None:
    a, b = _two_profiles(client, unique)
    before = _state(client, a, b)
    preview = client.post("/merges", json={"customer_ids": [b, a], "dry_run": True})
    assert preview.status_code == 200
    body = preview.json()
    assert body["status"] == "preview"
    assert body["merge_id"] is None
    assert (body["survivor_id"], body["merged_id"]) == (a, b), "the older profile survives"
    assert body["trait_conflicts"] == {"tier": {"survivor": "gold", "merged": "basic", "kept": "gold"}}
    assert body["profile"]["traits"] == {"tier": "gold", "city": "Bergen"}
    assert _state(client, a, b) == before


def test_merge_then_undo_restores_both_exactly(client: TestClient, unique: str) -> None:
    a, b = _two_profiles(client, unique)
    segment = client.post(
        "/segments",
        json={"name": f"raters-{unique}", "rule": {"field": "rating_count", "op": "gte", "value": 1}},
    ).json()
    before = _state(client, a, b)
    merged = client.post("/merges", json={"customer_ids": [a, b]})
    assert merged.status_code == 200
    merge = merged.json()
    assert merge["status"] == "applied"
    after = client.get(f"/customers/{b}").json()
    assert after["id"] == a, "the merged-away id answers the survivor"
    assert after["aggregates"]["event_count"] == 4
    assert after["phone"] == "+47 555 0101"
    assert (
        client.get("/customers/lookup", params={"type": "phone", "value": "+47 555 0101"}).json()[
            "customer_id"
        ]
        == a
    )
    members = {c["id"] for c in client.get(f"/segments/{segment['id']}/members").json()["items"]}
    assert members == {a}
    undo = client.post(f"/merges/{merge['merge_id']}/undo")
    assert undo.status_code == 200
    assert undo.json()["status"] == "undone"
    assert _state(client, a, b) == before
    assert {c["id"] for c in client.get(f"/segments/{segment['id']}/members").json()["items"]} == {b}
    history = client.get(f"/customers/{b}/export").json()["merges"]
    assert [(m["merge_id"], m["status"]) for m in history] == [(merge["merge_id"], "undone")]
    again = client.post(f"/merges/{merge['merge_id']}/undo")
    assert again.status_code == 409
