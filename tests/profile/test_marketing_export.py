"""A marketing segment export leaves out customers whose marketing consent is withdrawn, and says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from services.profile.app import create_app
from services.profile.settings import ProfileSettings
from tests.profile.conftest import event, feed


def consent(cid: str, granted: bool, at: datetime) -> Any:
    return event("consent_changed", {"customer": {"customer_id": cid}, "purpose": "marketing", "granted": granted},
                 at=at)  # fmt: skip


def purchase(cid: str, at: datetime) -> Any:
    return event(
        "purchase", {"customer": {"customer_id": cid}, "order_id": f"o-{cid}", "amount": 10.0}, at=at
    )


def test_marketing_export_leaves_out_withdrawn_consent_with_the_reason(
    client: TestClient, profile_settings: ProfileSettings, unique: str
) -> None:
    now = datetime.now(UTC)
    granted, withdrawn, late_grant, silent = (f"mkt-{unique}-{n}" for n in ("a", "b", "c", "d"))
    trait = f"campaign-{unique}"
    feed(client, [purchase(c, now - timedelta(days=3)) for c in (granted, withdrawn, late_grant, silent)])
    feed(
        client,
        [
            consent(granted, True, now - timedelta(days=2)),
            consent(withdrawn, True, now - timedelta(days=5)),
            consent(withdrawn, False, now - timedelta(days=1)),
            consent(late_grant, False, now - timedelta(days=1)),
        ],
    )
    # A grant older than the withdrawal, arriving after it (a replay, a late system): the withdrawal stands.
    feed(client, [consent(late_grant, True, now - timedelta(days=4))])
    for c in (granted, withdrawn, late_grant, silent):
        assert client.patch(f"/customers/{c}", json={"traits": {"campaign": trait}}).status_code == 200
    segment = client.post(
        "/segments",
        json={"name": f"campaign-{unique}", "rule": {"field": "traits.campaign", "op": "eq", "value": trait}},
    ).json()
    members = f"/segments/{segment['id']}/members"

    everyone = client.get(members).json()
    assert {c["id"] for c in everyone["items"]} == {granted, withdrawn, late_grant, silent}
    assert everyone["total"] == 4
    assert everyone["excluded"] is None
    assert client.get(f"/customers/{late_grant}").json()["consent"]["marketing"]["granted"] is False

    marketing = client.get(members, params={"purpose": "marketing"}).json()
    assert {c["id"] for c in marketing["items"]} == {granted, silent}
    assert marketing["total"] == 2
    assert marketing["excluded"] == [{"reason": "marketing consent withdrawn", "count": 2}]
    # Paging runs over the customers who may be marketed to.
    first = client.get(members, params={"purpose": "marketing", "limit": 1}).json()
    second = client.get(members, params={"purpose": "marketing", "limit": 1, "offset": 1}).json()
    assert [c["id"] for c in first["items"] + second["items"]] == sorted([granted, silent])
    assert first["total"] == 2

    bad = client.get(members, params={"purpose": "spam"})
    assert bad.status_code == 422
    assert bad.json()["error"] == "InvalidRequest"

    # Opt-in mode: a customer who never decided is left out too, counted under its own reason.
    opt_in = profile_settings.model_copy(update={"marketing_needs_opt_in": True})
    with TestClient(create_app(opt_in)) as strict:
        answer = strict.get(members, params={"purpose": "marketing"}).json()
    assert [c["id"] for c in answer["items"]] == [granted]
    assert answer["total"] == 1
    assert answer["excluded"] == [
        {"reason": "marketing consent withdrawn", "count": 2},
        {"reason": "no marketing consent recorded", "count": 1},
    ]
