"""Marketing consent and the next-best-action, on real SQLite and PostgreSQL with a real model: a customer
who withdrew marketing consent is never offered a marketing action, and the answer says why."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from services.churn.settings import ChurnSettings
from shared.contracts import EventTypeName
from shared.contracts import events as ev
from shared.kafka import InboundEvent
from tests.churn.test_service import apply, inbound, purchase, ready_client

# Histories in the past (events must be within a day of the wall clock), ending 100 days ago.
START = datetime.now(UTC) - timedelta(days=400)
MARKETING = set(ChurnSettings.model_fields["marketing_actions"].default)


def consent(customer: str, granted: bool, when: datetime, purpose: str = "marketing") -> InboundEvent:
    payload = ev.ConsentChanged(
        customer=ev.CustomerRef(customer_id=customer), purpose=purpose, granted=granted
    )  # type: ignore[arg-type]
    return inbound(EventTypeName.CONSENT_CHANGED, payload, subject=customer, when=when)


@pytest.fixture
def client(make_settings: Callable[..., ChurnSettings], database_url: str) -> Iterator[TestClient]:
    yield from ready_client(make_settings(database_url=database_url))


def at_risk(client: TestClient, *customers: str) -> None:
    """One purchase each, then 300 days of silence: high risk, where the default rules offer marketing."""
    apply(client, [purchase(c, START, amount=250.0) for c in customers])
    apply(client, [purchase("clock", START + timedelta(days=300))])


def test_withdrawn_marketing_consent_withholds_marketing_actions_with_the_reason(client: TestClient) -> None:
    at_risk(client, "fay")
    before = client.get("/churn/fay").json()
    assert before["band"] == "high"
    assert before["next_best_action"]["action"] in MARKETING
    assert before["actions_withheld"] == []

    apply(client, [consent("fay", False, START + timedelta(days=100))])
    after = client.get("/churn/fay").json()
    assert after["next_best_action"] is None or after["next_best_action"]["action"] not in MARKETING
    withheld = after["actions_withheld"]
    assert before["next_best_action"]["rule_id"] in {w["rule_id"] for w in withheld}
    assert {w["action"] for w in withheld} <= MARKETING
    withdrawn_on = (START + timedelta(days=100)).date().isoformat()
    assert all(w["reason"] == f"marketing consent withdrawn on {withdrawn_on}" for w in withheld)

    # An older grant arriving late (a replay) does not undo the withdrawal; a newer one does.
    apply(client, [consent("fay", True, START + timedelta(days=50))])
    assert client.get("/churn/fay").json()["actions_withheld"] == withheld
    apply(client, [consent("fay", True, START + timedelta(days=200))])
    regranted = client.get("/churn/fay").json()
    assert regranted["next_best_action"] == before["next_best_action"]
    assert regranted["actions_withheld"] == []


def test_other_purposes_and_service_actions_are_not_marketing(client: TestClient) -> None:
    rule = {"id": "call-all", "name": "Anyone at high risk: service call", "action": "support_callback",
            "priority": 10, "bands": ["high"]}  # fmt: skip
    assert client.post("/actions/rules", json=rule).status_code == 201
    at_risk(client, "gus")
    apply(client, [consent("gus", False, START + timedelta(days=10), purpose="analytics")])
    assert client.get("/churn/gus").json()["next_best_action"]["action"] in MARKETING
    apply(client, [consent("gus", False, START + timedelta(days=20))])
    body = client.get("/churn/gus").json()
    # The lower-priority service action is offered instead of the withheld marketing ones.
    assert body["next_best_action"]["action"] == "support_callback"
    assert body["actions_withheld"]


def test_a_merged_profiles_withdrawal_counts_for_the_survivor_until_undone(client: TestClient) -> None:
    at_risk(client, "hal", "hal-old")
    apply(client, [consent("hal-old", False, START + timedelta(days=5))])
    merged = ev.CustomerMerged(merge_id="m-hal", survivor_id="hal", merged_id="hal-old")
    assert client.get("/churn/hal").json()["actions_withheld"] == []
    apply(client, [inbound(EventTypeName.CUSTOMER_MERGED, merged)])
    assert client.get("/churn/hal").json()["actions_withheld"]
    apply(client, [inbound(EventTypeName.CUSTOMER_MERGED, merged.model_copy(update={"undone": True}))])
    assert client.get("/churn/hal").json()["actions_withheld"] == []
    assert client.get("/churn/hal-old").json()["actions_withheld"]
    apply(
        client,
        [inbound(EventTypeName.CUSTOMER_ERASED, ev.CustomerErased(customer_id="hal-old", erasure_id="e"))],
    )
    app = client.app
    with app.state.runtime.session_factory() as session:  # type: ignore[attr-defined]
        assert app.state.churn.marketing_refusal(session, "hal-old") is None  # type: ignore[attr-defined]


def test_opt_in_mode_needs_a_recorded_grant(
    make_settings: Callable[..., ChurnSettings], database_url: str
) -> None:
    for client in ready_client(make_settings(database_url=database_url, marketing_needs_opt_in=True)):
        at_risk(client, "ida")
        body = client.get("/churn/ida").json()
        assert body["next_best_action"] is None or body["next_best_action"]["action"] not in MARKETING
        assert {w["reason"] for w in body["actions_withheld"]} == {
            "no marketing consent recorded (CRM_CHURN_MARKETING_NEEDS_OPT_IN)"
        }
        apply(client, [consent("ida", True, START + timedelta(days=1))])
        assert client.get("/churn/ida").json()["next_best_action"]["action"] in MARKETING
