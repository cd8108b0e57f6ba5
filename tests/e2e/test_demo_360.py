"""A demo customer's 360 through the gateway is complete: every part is there or says why not, recency
and churn read the same clock, and items have names. The session fleet loads the demo as `crm up` does
(catalog, data shifted to end now, then the CLV / RFM / recommender fit)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.fleet_support import RunningFleet

pytestmark = pytest.mark.slow


def a_360(client: httpx.Client, **search: Any) -> dict[str, Any]:
    page = client.get("/v1/customers", params={"limit": 1, **search})
    assert page.status_code == 200, page.text
    customer = page.json()["items"][0]["id"]
    whole = client.get(f"/v1/customers/{customer}")
    assert whole.status_code == 200, whole.text
    body: dict[str, Any] = whole.json()
    return body


def assert_complete(body: dict[str, Any]) -> None:
    assert body["degraded"] == []
    for part in ("profile", "segments", "clv", "sentiment", "recommendations", "churn"):
        assert body[part] is not None, f"{part} is null"
    rfm = body["profile"]["rfm"]
    if rfm["reason"] is None:
        assert None not in (rfm["recency_days"], rfm["scores"], rfm["cluster"]), rfm
    clv = body["clv"]
    if clv["reason"] is None:
        assert None not in (clv["p_alive"], clv["expected_purchases"], clv["expected_value"]), clv
    # No next-best-action only when no rule asks for one (the default rules act on medium and high risk)
    # or the one that would is withheld (it says why).
    assert (
        body["next_best_action"] is not None
        or body["churn"]["actions_withheld"]
        or body["churn"]["band"] == "low"
        or not body["churn"]["has_history"]
    ), body["churn"]
    items = body["recommendations"]["items"]
    assert items, "no recommendations"
    assert all(item["name"] for item in items), [i["item_id"] for i in items if not i["name"]]
    for item in items:
        assert all(because["name"] for because in item["because_items"]), item


def test_a_demo_buyers_360_is_complete_and_reads_one_clock(real_fleet: RunningFleet) -> None:
    with real_fleet.client() as client:
        buyer = a_360(client, sort="orders", order="desc")
    assert_complete(buyer)
    rfm, churn = buyer["profile"]["rfm"], buyer["churn"]
    assert rfm["reason"] is None, rfm  # a buyer is clustered
    assert rfm["cluster"], rfm
    assert buyer["clv"]["reason"] is None, buyer["clv"]  # and valued
    # One clock: the demo ends now, so recency is days or months, never decades; churn measures now too.
    assert 0 <= rfm["recency_days"] < 400, rfm
    as_of = datetime.fromisoformat(churn["as_of"])
    assert abs((datetime.now(UTC) - as_of).total_seconds()) < 86_400, churn["as_of"]
    for reason in churn["reasons"]:
        if reason["feature"] == "recency_days":
            assert abs(reason["value"] - rfm["recency_days"]) < 1.0, (reason, rfm)


def test_a_demo_raters_360_is_complete_and_says_why_it_has_no_clv(real_fleet: RunningFleet) -> None:
    with real_fleet.client() as client:
        whole = client.get("/v1/customers/ml-1")  # MovieLens user 1: 272 ratings, no purchase
        assert whole.status_code == 200, whole.text
        rater = whole.json()
    assert_complete(rater)
    assert rater["profile"]["aggregates"]["rating_count"] > 0
    assert rater["clv"]["reason"], rater["clv"]  # no purchases: the part says so
    assert rater["recommendations"]["strategy"] == "personalized"
