"""The customer 360's fan-out over real HTTP: parts, 404, degraded answers and circuit breakers.

The services behind the gateway run here as small stand-in apps on real ports (the real services take
a minute or more to train their models at start-up; tests/gateway/test_fleet.py runs the real ones)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from services.gateway.app import create_app
from shared.settings import KafkaSettings
from tests.gateway.conftest import make_settings
from tests.gateway.support import (
    ADMIN_KEY,
    ServerThread,
    serving,
    stand_in_churn,
    stand_in_profile,
    stand_in_recsys,
)

HEADERS = {"X-API-Key": ADMIN_KEY}


def test_360_combines_every_part(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    with (
        serving(stand_in_profile()) as profile,
        serving(stand_in_recsys()) as recsys,
        serving(stand_in_churn()) as churn,
    ):
        settings = make_settings(
            kafka_settings, tmp_path, profile_url=profile.url, recsys_url=recsys.url, churn_url=churn.url
        )
        with TestClient(create_app(settings)) as client:
            response = client.get("/v1/customers/c-42", headers=HEADERS)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["customer_id"] == "c-42"
            assert body["segments"] == ["champions"]
            assert body["clv"]["p_alive"] == 0.9
            assert len(body["recommendations"]["items"]) == settings.c360_recommendations
            assert body["churn"]["band"] == "high"
            assert body["next_best_action"] == {"action": "retention_offer", "rule_id": "r1"}
            # No sentiment service is running in this test: that part is null and named.
            assert body["degraded"] == ["sentiment"]
            assert body["sentiment"]["trend"] == {"trend": "steady", "last_label": "positive"}
            merged = client.get("/v1/customers/merged-7", headers=HEADERS).json()
            assert merged["customer_id"] == "survivor-1"
            assert merged["recommendations"]["customer_id"] == "survivor-1"
            assert merged["churn"]["customer_id"] == "survivor-1"
            unknown = client.get("/v1/customers/unknown-1", headers=HEADERS)
            assert unknown.status_code == 404
            assert unknown.json()["error"] == "NotFound"


def test_recsys_down_answers_200_degraded_and_breaker_opens(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    recsys = ServerThread(stand_in_recsys()).start()
    with serving(stand_in_profile()) as profile, serving(stand_in_churn()) as churn:
        settings = make_settings(
            kafka_settings,
            tmp_path,
            profile_url=profile.url,
            recsys_url=recsys.url,
            churn_url=churn.url,
            breaker_failures=2,
            breaker_reset_s=0.5,
        )
        with TestClient(create_app(settings)) as client:
            assert client.get("/v1/customers/c1", headers=HEADERS).json()["recommendations"] is not None
            recsys.stop()
            for _ in range(3):
                response = client.get("/v1/customers/c1", headers=HEADERS)
                assert response.status_code == 200
                body = response.json()
                assert body["recommendations"] is None
                assert sorted(body["degraded"]) == ["recsys", "sentiment"]
                assert body["churn"]["band"] == "high"
            breaker = client.app.state.downstreams["recsys"].breaker  # type: ignore[attr-defined]
            assert breaker.state == "open"
            proxied = client.get("/v1/customers/c1/recommendations", headers=HEADERS)
            assert proxied.status_code == 503
            assert proxied.json()["error"] == "ServiceUnavailable"
            assert "Retry-After" in proxied.headers
            # The service comes back on the same port: after the reset time one trial call closes the breaker.
            with serving(stand_in_recsys(), port=recsys.port):
                time.sleep(0.6)
                body = client.get("/v1/customers/c1", headers=HEADERS).json()
                assert body["recommendations"] is not None
                assert "recsys" not in body["degraded"]
                assert breaker.state == "closed"


def test_slow_service_is_cut_off_by_the_per_call_timeout(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    import asyncio

    from fastapi import FastAPI

    slow = FastAPI()

    @slow.get("/churn/{customer_id}")
    async def churn(customer_id: str) -> dict[str, str]:
        await asyncio.sleep(2)
        return {"customer_id": customer_id}

    with serving(stand_in_profile()) as profile, serving(slow) as churn_server:
        settings = make_settings(
            kafka_settings, tmp_path, profile_url=profile.url, churn_url=churn_server.url, c360_timeout_s=0.3
        )
        with TestClient(create_app(settings)) as client:
            started = time.perf_counter()
            body = client.get("/v1/customers/c1", headers=HEADERS).json()
            assert time.perf_counter() - started < 1.5
            assert "churn" in body["degraded"]
            assert body["profile"]["customer_id"] == "c1"
