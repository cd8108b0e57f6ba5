"""The churn API and event handling on real SQLite and PostgreSQL with a real model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.churn.app import create_app
from services.churn.settings import ChurnSettings
from shared.contracts import CloudEvent, EventTypeName
from shared.contracts import events as ev
from shared.kafka import InboundEvent

# The wall clock is "now" (the fleet's one clock): histories are laid out backwards from it.
NOW = datetime.now(UTC)
START = NOW - timedelta(days=300)


def near_now(iso: str, ahead: timedelta = timedelta(0)) -> bool:
    return abs(datetime.fromisoformat(iso) - (datetime.now(UTC) + ahead)) < timedelta(minutes=10)


def inbound(type_: str, payload: Any, *, subject: str | None = None, when: datetime = START) -> InboundEvent:
    envelope = CloudEvent.new(type_, payload, source="/tests", subject=subject, time=when)
    return InboundEvent(envelope, payload, "t", 0, 0)


def purchase(customer: str, when: datetime, amount: float = 25.0) -> InboundEvent:
    ref = ev.CustomerRef(customer_id=customer)
    payload = ev.Purchase(customer=ref, order_id=f"{customer}-{when.isoformat()}", amount=amount)
    return inbound(EventTypeName.PURCHASE, payload, subject=customer, when=when)


def ready_client(settings: ChurnSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.05)
        yield client


@pytest.fixture
def client(make_settings: Callable[..., ChurnSettings], database_url: str) -> Iterator[TestClient]:
    yield from ready_client(make_settings(database_url=database_url))


def apply(client: TestClient, events: list[InboundEvent]) -> int:
    app: Any = client.app
    with app.state.runtime.session_factory() as session, session.begin():
        return int(app.state.churn.apply_events(events, session))


def test_a_customer_with_no_history_gets_the_defined_answer(client: TestClient) -> None:
    body = client.get("/churn/never-seen").json()
    model = client.get("/churn/model").json()
    assert body["has_history"] is False
    assert body["reasons"] == []
    assert body["trend"] == "steady"
    assert body["next_best_action"] is None
    assert body["model_version"] == model["version"]
    # The prior: the churn rate of the customers the model was trained on.
    assert body["probability"] == pytest.approx(model["metrics"]["positive_rate"])


def test_scores_follow_events_with_reasons_trend_and_value(client: TestClient) -> None:
    apply(client, [purchase("alice", START + timedelta(days=d)) for d in (0, 20, 45, 70, 95)])
    apply(client, [purchase("bob", START)])
    apply(client, [purchase("clock", START + timedelta(days=300))])  # a purchase about now
    alice = client.get("/churn/alice").json()
    bob = client.get("/churn/bob").json()
    assert alice["has_history"]
    assert bob["has_history"]
    assert near_now(alice["as_of"])  # the wall clock
    assert bob["probability"] > alice["probability"]  # one purchase 300 days ago vs five, latest 205 days ago
    total = alice["base_value"] + sum(r["weight"] for r in alice["reasons"]) + alice["other_weight"]
    assert total == pytest.approx(alice["raw_score"], abs=1e-9)
    assert any(r["text"].startswith("no activity for 205 days") for r in alice["reasons"])
    assert all(", +" in r["text"] or ", -" in r["text"] for r in alice["reasons"])
    assert alice["value_source"] == "bgnbd"
    assert alice["value"] > 0
    assert alice["trend"] in {"improving", "steady", "declining"}
    batch = client.post("/churn/score", json={"customer_ids": ["alice", "nobody"]}).json()
    assert [c["has_history"] for c in batch["customers"]] == [True, False]
    ranked = client.get("/churn/at-risk", params={"min_probability": 0.0, "limit": 10}).json()["customers"]
    assert {c["customer_id"] for c in ranked} == {"alice", "bob", "clock"}
    at_stake = [c["value_at_risk"] for c in ranked if c["value_at_risk"] is not None]
    assert at_stake == sorted(at_stake, reverse=True)


def test_erase_forgets_and_merge_moves_history(client: TestClient) -> None:
    apply(client, [purchase("carol", START), purchase("carol-old", START - timedelta(days=30))])
    apply(client, [purchase("dave", START + timedelta(days=10))])
    merged = ev.CustomerMerged(merge_id="m1", survivor_id="carol", merged_id="carol-old")
    apply(client, [inbound(EventTypeName.CUSTOMER_MERGED, merged)])
    assert client.get("/churn/carol-old").json()["has_history"] is False
    carol = client.get("/churn/carol").json()
    assert carol["has_history"] is True
    apply(client, [inbound(EventTypeName.CUSTOMER_MERGED, merged.model_copy(update={"undone": True}))])
    assert client.get("/churn/carol-old").json()["has_history"] is True
    erased = ev.CustomerErased(customer_id="dave", erasure_id="e1")
    apply(client, [inbound(EventTypeName.CUSTOMER_ERASED, erased)])
    assert client.get("/churn/dave").json()["has_history"] is False
    ids = [
        c["customer_id"]
        for c in client.get("/churn/at-risk", params={"min_probability": 0}).json()["customers"]
    ]
    assert "dave" not in ids


def test_rules_crud_next_best_action_and_reaction_counts(client: TestClient) -> None:
    rule = {
        "id": "vip-seg",
        "name": "VIP at any risk",
        "action": "vip_call",
        "priority": 500,
        "segment": "vip",
    }
    assert client.post("/actions/rules", json=rule).status_code == 201
    assert client.post("/actions/rules", json=rule).json()["error"] == "Conflict"
    apply(client, [purchase("erin", START)])
    joined = ev.SegmentMembershipChanged(customer_id="erin", segment_id="s1", segment_name="vip", joined=True)
    apply(client, [inbound(EventTypeName.SEGMENT_MEMBERSHIP_CHANGED, joined)])
    assert client.get("/churn/erin").json()["next_best_action"]["action"] == "vip_call"
    for reaction in ("accepted", "accepted", "ignored"):
        body = {"customer_id": "erin", "rule_id": "vip-seg", "action": "vip_call", "reaction": reaction}
        assert client.post("/actions/reactions", json=body).status_code == 201
    streamed = ev.NextBestActionReaction(
        customer_id="erin", action="vip_call", rule_id="vip-seg", reaction="rejected"
    )
    apply(client, [inbound(EventTypeName.NEXT_BEST_ACTION_REACTION, streamed)])
    counts = client.get("/actions/rules/vip-seg").json()["reactions"]
    assert counts == {"accepted": 2, "rejected": 1, "ignored": 1}
    updated = client.put("/actions/rules/vip-seg", json={**rule, "enabled": False}).json()
    assert updated["enabled"] is False
    assert client.get("/churn/erin").json()["next_best_action"]["action"] != "vip_call"
    assert client.delete("/actions/rules/vip-seg").status_code == 204
    assert client.get("/actions/rules/vip-seg").json()["error"] == "NotFound"


def test_bulk_columns_and_a_reloaded_table_model_score_through_the_api(
    make_settings: Callable[..., ChurnSettings], tmp_path: Any
) -> None:
    import shutil

    from services.churn.ml.table import telco_files, train_table
    from services.churn.ml.training import save_version

    models = tmp_path / "models-with-table"
    shutil.copytree(make_settings().models_path() / "models", models / "models")
    for client in ready_client(make_settings(model_dir=str(models))):
        rows = [
            {"recency_days": 5, "tenure_days": 400, "n_activity": 30, "n_purchases": 30, "active_days": 30},
            {"recency_days": 300, "tenure_days": 310, "n_activity": 1, "n_purchases": 1, "active_days": 1},
        ]
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        body = client.post("/churn/score", json={"rows": rows, "columns": columns, "reasons": True}).json()
        assert [r["probability"] for r in body["rows"]] == pytest.approx(body["batch"]["probabilities"])
        assert body["rows"][1]["probability"] > body["rows"][0]["probability"]
        assert body["rows"][0]["reasons"]
        telco = {"tenure": 2, "contract": "Month-to-month", "monthlycharges": 95.0, "totalcharges": "190",
                 "internetservice": "Fiber optic", "paymentmethod": "Electronic check", "seniorcitizen": 0}  # fmt: skip
        loyal = {**telco, "tenure": 70, "contract": "Two year", "totalcharges": "6000",
                 "paymentmethod": "Credit card (automatic)"}  # fmt: skip
        assert (
            client.post("/churn/score", json={"rows": [telco], "model": "table"}).json()["error"]
            == "NotFound"
        )
        train_path, test_path = telco_files()
        run = train_table(train_path, test_path, tune=False)
        assert run.metrics["test_auc"] > 0.8
        save_version(run.fit.model, models)
        assert client.post("/churn/model/reload").json()["table_model_version"] == run.fit.model.version
        scored = client.post(
            "/churn/score", json={"rows": [telco, loyal], "model": "table", "reasons": True}
        ).json()
        assert scored["rows"][0]["model_version"] == run.fit.model.version
        assert scored["rows"][0]["probability"] > scored["rows"][1]["probability"]
        assert any(r["text"].startswith("contract: Month-to-month") for r in scored["rows"][0]["reasons"])
        bad = client.post("/churn/score", json={"columns": {"recency_days": [1, 2], "tenure_days": [3]}})
        assert bad.status_code == 422
        assert bad.json()["error"] == "InvalidRequest"


def test_sentiment_and_clv_feed_the_next_best_action_and_ranking(client: TestClient) -> None:
    apply(
        client,
        [purchase("frank", START), purchase("gina", START), purchase("clock", START + timedelta(days=300))],
    )
    assert client.get("/churn/frank").json()["next_best_action"]["action"] == "win_back_mail"
    unhappy = ev.SentimentScored(
        customer_id="frank", source_event_id="r1", source_type="support_message", label="negative",
        score=0.1, language="en", model_version="test",
    )  # fmt: skip
    # Sentiment is stamped at scoring time, a moment ago.
    apply(client, [inbound(EventTypeName.SENTIMENT_SCORED, unhappy, when=datetime.now(UTC))])
    frank = client.get("/churn/frank").json()
    assert near_now(frank["as_of"])
    assert frank["next_best_action"]["action"] == "support_callback"
    identify = ev.Identify(customer=ev.CustomerRef(customer_id="gina"), traits={"clv": 5000.0})
    apply(
        client,
        [
            inbound(EventTypeName.IDENTIFY, identify, subject="gina"),
            purchase("gina", START + timedelta(days=1)),
        ],
    )
    ranked = client.get("/churn/at-risk", params={"min_probability": 0.0}).json()["customers"]
    assert ranked[0]["customer_id"] == "gina"
    assert ranked[0]["value"] == 5000.0
    assert client.get("/churn/gina").json()["value_source"] == "clv"


def test_rescore_sweep_catches_up_with_time_for_silent_customers(client: TestClient) -> None:
    apply(client, [purchase("hank", START + timedelta(days=d)) for d in range(0, 100, 10)])
    stored_before = client.get("/churn/at-risk", params={"min_probability": 0.0}).json()["customers"][0]
    # 100 days pass: pin the clock there, as CRM_CHURN_AS_OF does.
    churn: Any = client.app.state.churn  # type: ignore[attr-defined]
    churn.settings = churn.settings.model_copy(update={"as_of": datetime.now(UTC) + timedelta(days=100)})
    fresh = client.get("/churn/hank").json()
    assert fresh["probability"] > stored_before["probability"]  # silent for 310 days now
    assert near_now(fresh["as_of"], ahead=timedelta(days=100))
    result = client.post("/churn/rescore").json()
    assert result["customers"] == 1
    assert near_now(result["as_of"], ahead=timedelta(days=100))
    stored = {
        c["customer_id"]: c
        for c in client.get("/churn/at-risk", params={"min_probability": 0}).json()["customers"]
    }
    assert stored["hank"]["probability"] == pytest.approx(fresh["probability"])
    assert stored["hank"]["band"] == fresh["band"]
    assert result["band_changes"] == int(stored_before["band"] != fresh["band"])
