"""The customer 360's fan-out to the real services: parts, 404, degraded answers and circuit breakers.

The gateway runs in this process (so its breakers can be inspected) in front of the real fleet
(``real_fleet``). A failure is forced on the real process: SIGSTOP makes a service accept connections
and answer nothing, as a hung service does.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.examples import C360_EXAMPLE
from services.gateway.schemas import Customer360
from tests.fleet_support import RunningFleet, wait_until
from tests.gateway.conftest import fleet_gateway
from tests.gateway.support import ADMIN_KEY

pytestmark = pytest.mark.slow
HEADERS = {"X-API-Key": ADMIN_KEY}


def a_demo_customer(client: TestClient) -> str:
    """A demo customer with purchases (CDNOW), so every part of the 360 has something to say."""
    page = client.get("/v1/customers?sort=orders&limit=1", headers=HEADERS)
    assert page.status_code == 200, page.text
    return str(page.json()["items"][0]["id"])


def test_360_combines_every_part_from_the_real_services(real_fleet: RunningFleet, tmp_path: Path) -> None:
    with fleet_gateway(real_fleet, tmp_path) as client:
        customer = a_demo_customer(client)
        response = client.get(f"/v1/customers/{customer}", headers=HEADERS)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["customer_id"] == customer
        assert body["degraded"] == []
        assert body["profile"]["id"] == customer
        assert body["profile"]["aggregates"]["orders"] > 0
        assert isinstance(body["segments"], list)
        assert body["recommendations"]["customer_id"] == customer
        assert len(body["recommendations"]["items"]) == 5  # the gateway's c360_recommendations
        # One number per fact: the churn part is the churn service's answer, and nothing contradicts it.
        churn = client.get(f"/v1/customers/{customer}/churn", headers=HEADERS).json()
        assert body["churn"]["probability"] == churn["probability"]
        assert body["churn"]["band"] == churn["band"] == body["profile"]["churn"]["band"]
        assert "probability" not in body["profile"]["churn"]
        assert body["next_best_action"] == churn["next_best_action"]
        sentiment = client.get(f"/v1/customers/{customer}/sentiment", headers=HEADERS).json()
        assert body["sentiment"]["count"] == sentiment["count"] == body["profile"]["sentiment"]["count"]

        unknown = client.get(f"/v1/customers/nobody-{uuid.uuid4().hex}", headers=HEADERS)
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "NotFound"
        for sub in ("churn", "sentiment", "recommendations"):
            assert client.get(f"/v1/customers/nobody-x/{sub}", headers=HEADERS).status_code == 404


def test_a_stalled_service_is_cut_off_degraded_and_its_breaker_recovers(
    real_fleet: RunningFleet, tmp_path: Path
) -> None:
    with fleet_gateway(
        real_fleet,
        tmp_path,
        c360_timeout_s=0.4,
        downstream_timeout_s=0.4,
        breaker_failures=2,
        breaker_reset_s=1.0,
    ) as client:
        customer = a_demo_customer(client)
        client.app.state.c360_cache.clear()  # type: ignore[attr-defined]
        assert client.get(f"/v1/customers/{customer}", headers=HEADERS).json()["degraded"] == []
        breaker = client.app.state.downstreams["recsys"].breaker  # type: ignore[attr-defined]
        with real_fleet.stalled("recsys"):
            for _ in range(3):
                started = time.perf_counter()
                response = client.get(f"/v1/customers/{customer}", headers=HEADERS)
                assert time.perf_counter() - started < 1.5  # cut off by the per-call timeout
                assert response.status_code == 200
                body = response.json()
                assert body["degraded"] == ["recsys"]
                assert body["recommendations"] is None
                assert body["churn"] is not None
                assert body["profile"] is not None
            assert breaker.state == "open"
            proxied = client.get(f"/v1/customers/{customer}/recommendations", headers=HEADERS)
            assert proxied.status_code == 503
            assert proxied.json()["error"] == "ServiceUnavailable"
            assert "Retry-After" in proxied.headers
        # The service answers again: after the reset time one trial call closes the breaker by itself.
        wait_until(
            lambda: client.get(f"/v1/customers/{customer}", headers=HEADERS).json()["degraded"] == [],
            timeout_s=15,
            what="the 360 to be complete again",
        )
        assert breaker.state == "closed"
        assert client.get(f"/v1/customers/{customer}/recommendations", headers=HEADERS).status_code == 200


def _shape(value: object) -> object:
    """The keys of a JSON value, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list) and value:
        return [_shape(value[0])]
    return type(value).__name__


def test_the_openapi_example_of_the_360_has_the_shape_the_fleet_answers(
    real_fleet: RunningFleet, tmp_path: Path
) -> None:
    with fleet_gateway(real_fleet, tmp_path) as client:
        spec = client.get("/openapi.json").json()
        shown = spec["components"]["schemas"]["Customer360"]["examples"][0]
        assert shown["customer_id"] == C360_EXAMPLE["customer_id"]  # (the document leaves out its nulls)
        example = C360_EXAMPLE
        Customer360.model_validate(example)
        real = client.get(f"/v1/customers/{a_demo_customer(client)}", headers=HEADERS).json()
        example_shape, real_shape = _shape(example), _shape(real)
        assert isinstance(example_shape, dict)
        assert isinstance(real_shape, dict)
        for part in ("profile", "churn", "recommendations", "sentiment", "clv"):
            assert set(real_shape[part]) <= set(example_shape[part]), part  # nothing the example hides
        assert set(real_shape) <= set(example_shape)


def test_the_models_of_every_service_in_one_answer(real_fleet: RunningFleet, tmp_path: Path) -> None:
    with fleet_gateway(real_fleet, tmp_path) as client:
        response = client.get("/v1/models", headers=HEADERS)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["degraded"] == []
        assert body["recsys"]["serving"] != "popularity"  # the demo fit trained one
        languages = {m["language"] for m in body["sentiment"]["models"]}
        assert languages == {"en", "zh"}
        assert all(m["val_acc"] is not None for m in body["sentiment"]["models"] if m["language"] == "en")
        assert body["churn"]["version"]
        assert body["profile"] is not None
        with real_fleet.stalled("churn"):  # answers nothing within the per-call timeout
            partial = client.get("/v1/models", headers=HEADERS).json()
        assert partial["degraded"] == ["churn"]
        assert partial["churn"] is None
        assert partial["recsys"] is not None
