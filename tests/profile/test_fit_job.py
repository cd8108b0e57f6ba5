"""``POST /models/fit``: the background CLV fit and RFM clustering that ``crm up`` runs once the demo data is
in, with its progress at ``GET /models/fit``; afterwards every buyer's 360 has RFM scores, a named cluster
and CLV, and a part that stays empty says why."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from shared.datasets import cdnow_transactions
from shared.replay import cdnow_customer_id, cdnow_events
from tests.profile.conftest import event, feed


def wait_until_done(client: TestClient, requested: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        status = client.get("/models/fit").json()
        if status["runs"] >= requested:
            assert status["state"] == "done"
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_fit_now_fills_rfm_clusters_and_clv_of_every_buyer(client: TestClient) -> None:
    customers = sorted({t.customer_id for t in cdnow_transactions(sample=True)})[:80]
    feed(client, [e.event for e in cdnow_events(sample=True, customers=customers, now=datetime.now(UTC))])
    feed(client, [event("rating", {"customer": {"customer_id": "rater"}, "item_id": "m1", "rating": 4})])
    started = client.post("/models/fit")
    assert started.status_code == 202
    assert started.json()["requested"] == 1
    status = wait_until_done(client, 1)
    assert status["steps_done"] == status["steps_total"] == 3
    outcomes = {job["job"]: job for job in status["jobs"]}
    assert outcomes["clv"]["outcome"] == "fitted"
    assert outcomes["rfm_clusters"]["outcome"] == "fitted"
    models = client.get("/models").json()
    assert models["clv"]["version"] == outcomes["clv"]["version"]
    assert models["rfm_clusters"]["version"] == outcomes["rfm_clusters"]["version"]
    names = set(models["rfm_clusters"]["params"]["names"])
    for customer in customers:
        view = client.get(f"/customers/{cdnow_customer_id(customer)}").json()
        rfm, clv = view["rfm"], view["clv"]
        assert rfm["reason"] is None, rfm
        assert rfm["cluster"] in names
        assert len(rfm["scores"]) == 3
        assert clv["reason"] is None, clv
        assert clv["model_version"] == outcomes["clv"]["version"]
        assert None not in (clv["p_alive"], clv["expected_purchases"], clv["expected_value"])
    rater = client.get("/customers/rater").json()
    assert rater["rfm"]["reason"] == rater["clv"]["reason"] == "no purchases yet"
    assert rater["rfm"]["cluster"] is None
    assert rater["clv"]["p_alive"] is None


def test_too_few_buyers_is_a_skip_with_its_reason(client: TestClient) -> None:
    feed(client, [event("purchase", {"customer": {"customer_id": "lone"}, "order_id": "1", "amount": 5.0})])
    status = wait_until_done(client, client.post("/models/fit").json()["requested"])
    outcomes = {job["job"]: job for job in status["jobs"]}
    assert outcomes["clv"]["outcome"] == "skipped"
    assert "at least 10 customers" in outcomes["clv"]["detail"]
    lone = client.get("/customers/lone").json()
    assert lone["clv"]["reason"].startswith("not fitted yet")
    assert lone["rfm"]["reason"].startswith("not clustered yet")
    assert lone["rfm"]["recency_days"] is not None
