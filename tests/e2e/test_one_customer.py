"""One customer, one truth: the 360 and every sub-route, asked by any of a customer's ids, agree.

Runs against the real fleet (``real_fleet``: every service a process, real models, the real broker).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.fleet_support import RunningFleet, wait_until

pytestmark = pytest.mark.slow


def send(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    response = client.post("/v1/events", json=events)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(events), response.text


def answers(client: httpx.Client, customer_id: str) -> dict[str, Any]:
    """What the gateway says about one customer, by the 360 and by each sub-route, in comparable form."""
    whole = client.get(f"/v1/customers/{customer_id}")
    assert whole.status_code == 200, whole.text
    c360 = whole.json()
    assert c360["degraded"] == [], c360["degraded"]
    subs = {}
    for sub in ("churn", "sentiment", "recommendations"):
        response = client.get(f"/v1/customers/{customer_id}/{sub}")
        assert response.status_code == 200, response.text
        subs[sub] = response.json()
        assert response.headers["X-CRM-Customer-Id"] == c360["customer_id"]
    return {
        "canonical": c360["customer_id"],
        "churn_360": (c360["churn"]["probability"], c360["churn"]["band"], c360["churn"]["has_history"]),
        "churn_sub": (subs["churn"]["probability"], subs["churn"]["band"], subs["churn"]["has_history"]),
        "sentiment_360": c360["sentiment"]["count"],
        "sentiment_profile": c360["profile"]["sentiment"]["count"],
        "sentiment_sub": subs["sentiment"]["count"],
        "segments": sorted(c360["segments"]),
        "recs_360": [i["item_id"] for i in c360["recommendations"]["items"]],
        "recs_strategy_360": c360["recommendations"]["strategy"],
        "recs_sub": [
            i["item_id"] for i in subs["recommendations"]["items"][: len(c360["recommendations"]["items"])]
        ],
        "recs_strategy_sub": subs["recommendations"]["strategy"],
        "history": subs["recommendations"]["history_size"],
    }


def test_every_route_answers_for_the_canonical_customer_by_any_of_its_ids(real_fleet: RunningFleet) -> None:
    tag = uuid.uuid4().hex[:8]
    first, second = f"shop-{tag}-a", f"shop-{tag}-b"
    email, other_email = f"ada-{tag}@example.com", f"bob-{tag}@example.com"
    with real_fleet.client() as client:
        send(client, [{"type": "identify", "customer": {"customer_id": first, "email": email}}])
        send(client, [{"type": "identify", "customer": {"customer_id": second, "email": other_email}}])
        wait_until(
            lambda: all(client.get(f"/v1/customers/{c}").status_code == 200 for c in (first, second)),
            timeout_s=30,
            what="both profiles",
        )
        send(
            client,
            [
                {
                    "type": "purchase",
                    "customer": {"customer_id": first},
                    "order_id": f"o-{tag}",
                    "amount": 30.0,
                    "currency": "EUR",
                    "items": [{"item_id": "movie-50", "quantity": 1, "price": 30.0}],
                },
                {"type": "rating", "customer": {"customer_id": first}, "item_id": "movie-181", "rating": 5},
                {
                    "type": "review",
                    "customer": {"email": email},
                    "text": "A wonderful film, loved it",
                    "stars": 5,
                },
                {
                    "type": "support_message",
                    "customer": {"email": email},
                    "text": "My parcel arrived broken and nobody answers, this is terrible",
                },
                {"type": "rating", "customer": {"customer_id": second}, "item_id": "movie-172", "rating": 4},
            ],
        )
        merged = client.post("/v1/merges", json={"customer_ids": [first, second]})
        assert merged.status_code == 200, merged.text
        survivor = merged.json()["survivor_id"]
        interacted = {"movie-50", "movie-181", "movie-172"}

        def settled() -> bool:
            found = answers(client, survivor)
            return (
                found["sentiment_sub"] == 2
                and found["sentiment_profile"] == 2
                and found["churn_sub"][2] is True
                and found["history"] == 3
            )

        wait_until(settled, timeout_s=60, what="every service to see every event of the merged customer")
        seen = {ident: answers(client, ident) for ident in (first, second, survivor)}

    reference = seen[survivor]
    assert reference["canonical"] == survivor
    for ident, found in seen.items():
        assert found == reference, f"{ident} answers differently from {survivor}"
    # The answers reflect every event sent under any of the ids.
    assert reference["churn_360"] == reference["churn_sub"]
    assert reference["churn_360"][2] is True
    assert reference["sentiment_360"] == reference["sentiment_profile"] == reference["sentiment_sub"] == 2
    assert reference["recs_strategy_360"] == reference["recs_strategy_sub"] == "personalized"
    assert reference["recs_360"] == reference["recs_sub"]
    assert not interacted & set(reference["recs_360"])


def test_events_under_several_identifiers_at_once_reach_one_customer(real_fleet: RunningFleet) -> None:
    """Identify by customer_id + email + phone, then at once a purchase and a rating under the customer_id
    and a support message under the email: keyed differently, they may be applied in any order."""
    tag = uuid.uuid4().hex[:8]
    customer_id, email, phone = (
        f"shop-{tag}",
        f"cy-{tag}@example.com",
        f"+44 20 7946 {int(tag, 16) % 10000:04d}",
    )
    with real_fleet.client() as client:
        send(
            client,
            [
                {
                    "type": "identify",
                    "customer": {"customer_id": customer_id, "email": email, "phone": phone},
                },
                {
                    "type": "purchase",
                    "customer": {"customer_id": customer_id},
                    "order_id": f"o-{tag}",
                    "amount": 12.0,
                    "currency": "EUR",
                    "items": [{"item_id": "movie-1", "quantity": 1, "price": 12.0}],
                },
                {
                    "type": "rating",
                    "customer": {"customer_id": customer_id},
                    "item_id": "movie-2",
                    "rating": 4,
                },
                {"type": "support_message", "customer": {"email": email}, "text": "Where is my order?"},
            ],
        )

        def settled() -> bool:
            response = client.get(f"/v1/customers/{customer_id}")
            if response.status_code != 200:
                return False
            body = response.json()
            recs = body["recommendations"] or {}
            return bool(
                body["sentiment"]["count"] == 1
                and recs.get("strategy") == "personalized"
                and recs.get("history_size") == 2
                and body["churn"]["has_history"]
            )

        wait_until(settled, timeout_s=60, what="the purchase, rating and message to reach one customer")
        canonical = client.get(f"/v1/customers/{customer_id}").json()["customer_id"]
        for ident in {customer_id, canonical}:
            assert answers(client, ident) == answers(client, canonical)
