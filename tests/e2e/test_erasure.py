"""Erasure reaches every store: after ``DELETE /v1/customers/{id}`` no file of any service — databases
(their WAL too), model and index files, logs — holds the customer's ids, email, phone or the text they wrote.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.fleet_support import RunningFleet, wait_until

pytestmark = pytest.mark.slow


def files_containing(root: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """Which needle occurs in which file under ``root`` (raw bytes, so deleted-but-not-overwritten pages count)."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for name, needle in needles.items():
            if needle in data:
                found.setdefault(name, []).append(str(path.relative_to(root)))
    return found


def test_an_erased_customer_leaves_no_trace_in_any_store(real_fleet: RunningFleet) -> None:
    tag = uuid.uuid4().hex[:10]
    customer_id = f"erase-me-{tag}"
    email = f"erin.{tag}@example.org"
    phone = f"+4420794{int(tag[:6], 16) % 100000:05d}"
    review = f"Lovely scarf, delivered to 14 Quillfeather Lane {tag}, thank you"
    message = f"Please call me back about order {tag}, the box was damaged"
    with real_fleet.client() as client:
        sent = client.post(
            "/v1/events",
            json=[
                {
                    "type": "identify",
                    "customer": {"customer_id": customer_id, "email": email, "phone": phone},
                    "traits": {"name": f"Erin {tag}"},
                },
                {
                    "type": "purchase",
                    "customer": {"customer_id": customer_id},
                    "order_id": f"order-{tag}",
                    "amount": 25.0,
                    "currency": "EUR",
                    "items": [{"item_id": "movie-50", "quantity": 1, "price": 25.0}],
                },
                {
                    "type": "rating",
                    "customer": {"customer_id": customer_id},
                    "item_id": "movie-98",
                    "rating": 5,
                },
                {"type": "review", "customer": {"email": email}, "text": review, "stars": 5},
                {"type": "support_message", "customer": {"phone": phone}, "text": message},
            ],
        )
        assert sent.status_code == 202, sent.text

        last: dict[str, object] = {}

        def everywhere() -> bool:
            whole = client.get(f"/v1/customers/{customer_id}")
            if whole.status_code != 200:
                return False
            body = whole.json()
            recs = body["recommendations"] or {}
            last.update(
                sentiment=(body["sentiment"] or {}).get("count"),
                history=recs.get("history_size"),
                churn=(body["churn"] or {}).get("has_history"),
                degraded=body["degraded"],
            )
            return last == {"sentiment": 2, "history": 2, "churn": True, "degraded": []}

        try:
            wait_until(everywhere, timeout_s=120, what="every service to hold the customer")
        except AssertionError:
            raise AssertionError(f"the services did not all see the customer: {last}") from None
        needles = {
            "customer_id": customer_id.encode(),
            "email": email.encode(),
            "phone": phone.encode(),
            "review": review.encode(),
            "message": message.encode(),
        }
        assert files_containing(real_fleet.data_dir, needles), "the scan finds nothing even before erasure"

        erased = client.delete(f"/v1/customers/{customer_id}")
        assert erased.status_code == 200, erased.text
        assert client.get(f"/v1/customers/{customer_id}").status_code == 404

    def nothing_left() -> bool:
        return not files_containing(real_fleet.data_dir, needles)

    try:
        wait_until(nothing_left, timeout_s=60, interval_s=2, what="the erasure to reach every store")
    except AssertionError:
        left = files_containing(real_fleet.data_dir, needles)
        raise AssertionError(f"still found after erasure: {left}") from None
    # The services still answer about other customers (the erasure did not break a store).
    with real_fleet.client() as client:
        assert client.get("/v1/customers?limit=1").status_code == 200
        assert httpx.get(f"{real_fleet.url_of('recsys')}/livez", timeout=5).status_code == 200
