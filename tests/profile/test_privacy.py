"""Export and erasure: after erasure no table holds the customer's id, identifiers or PII."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from services.profile.service import ProfileService
from tests.profile.conftest import Store, event, feed

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _all_text(client: TestClient) -> str:
    store = Store.__new__(Store)
    store.engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
    return store.all_text()


def test_pii_is_encrypted_at_rest(store: Store, unique: str) -> None:
    email, phone = f"pii.{unique}@example.com", "+1 202 555 0199"
    store.apply(
        [event("identify", {"customer": {"customer_id": f"p-{unique}", "email": email, "phone": phone}})]
    )
    text = store.all_text()
    assert email not in text
    assert email.lower() not in text
    assert phone not in text
    assert "12025550199" not in text


def test_export_then_erasure_leaves_nothing(client: TestClient, unique: str) -> None:
    cid, anon, other = f"gone-{unique}", f"anon-{unique}", f"other-{unique}"
    email, phone, ext = f"gone.{unique}@example.com", "+44 20 7946 0958", f"shop-{unique}"
    feed(
        client,
        [
            event("product_view", {"customer": {"anonymous_id": anon}, "item_id": "i1"}, at=T0),
            event(
                "identify",
                {"customer": {"customer_id": cid, "email": email}, "traits": {"name": "Gone"}},
                at=T0 + timedelta(hours=1),
            ),
            event(
                "identify",
                {
                    "customer": {
                        "customer_id": cid,
                        "anonymous_id": anon,
                        "phone": phone,
                        "external_ids": {"shop": ext},
                    }
                },
                at=T0 + timedelta(hours=2),
            ),
            event(
                "review",
                {"customer": {"customer_id": cid}, "text": "Loved it", "stars": 5},
                at=T0 + timedelta(hours=3),
            ),
            event("purchase", {"customer": {"customer_id": other}, "order_id": "x", "amount": 3.0}, at=T0),
        ],
    )
    client.post(
        "/segments", json={"name": f"all-{unique}", "rule": {"field": "event_count", "op": "gte", "value": 1}}
    )
    profile = client.get(f"/customers/{cid}").json()
    canonical = profile["id"]
    assert canonical != cid, "the anonymous profile was older, so it survived the merge"
    exported = client.get(f"/customers/{cid}/export")
    assert exported.status_code == 200
    data = exported.json()
    assert {(i["kind"], i["value"]) for i in data["identifiers"]} == {
        ("anonymous_id", anon), ("customer_id", cid), ("email", email), ("phone", phone), ("ext:shop", ext)
    }  # fmt: skip
    assert len(data["timeline"]) == 4
    assert data["profile"]["traits"] == {"name": "Gone"}

    erased = client.delete(f"/customers/{cid}")
    assert erased.status_code == 200
    receipt = erased.json()
    assert receipt["already_erased"] is False
    assert receipt["deleted"]["timeline"] == 4
    text = _all_text(client)
    for needle in (cid, canonical, anon, email, email.lower(), phone, "442079460958", ext, "Loved it"):
        assert needle not in text, f"{needle!r} is still stored"
    assert other in text, "other customers are untouched"
    assert client.get(f"/customers/{cid}").status_code == 404
    assert client.get("/customers/lookup", params={"type": "email", "value": email}).status_code == 404

    again = client.delete(f"/customers/{cid}")
    assert again.status_code == 200
    assert again.json()["erasure_id"] == receipt["erasure_id"]
    assert again.json()["already_erased"] is True


def test_erasure_emits_customer_erased(client: TestClient, unique: str) -> None:
    service: ProfileService = client.app.state.profile_service  # type: ignore[attr-defined]
    cid = f"e-{unique}"
    feed(client, [event("identify", {"customer": {"customer_id": cid}})])
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        _, already, outbound = service.erase(session, cid)
        session.rollback()
    assert already is False
    assert [(topic, e.data["customer_id"]) for topic, e, _ in outbound] == [("crm.customer.erased.v1", cid)]
