"""The gateway in front of the real fleet when the broker stalls and when a service is killed.

Acceptance: with the broker paused (SIGSTOP) ingest answers 503 + Retry-After and, once resumed, every
event that got 202 is in the profile; with the recsys process killed the 360 answers 200 with
``degraded: ["recsys"]``, and once recsys is restarted the 360 is complete again.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from shared.auth import Scope
from tests.fleet_support import RunningFleet, wait_until
from tests.gateway.conftest import fleet_gateway
from tests.gateway.support import ADMIN_KEY, make_key

pytestmark = pytest.mark.slow


def test_real_fleet_paused_broker_and_killed_recsys(real_fleet: RunningFleet, tmp_path: Path) -> None:
    broker = real_fleet.fleet.broker
    assert broker is not None, "the test fleet runs on the embedded broker"
    tag = uuid.uuid4().hex[:8]
    with fleet_gateway(real_fleet, tmp_path, publish_timeout_s=1.5) as client:
        headers = {"X-API-Key": make_key(client, Scope.EVENTS_WRITE)}
        acknowledged: list[str] = []

        def send(batch: int) -> httpx.Response:
            customers = [f"paused-{tag}-{batch}-{i}" for i in range(10)]
            events = [
                {"type": "identify", "customer": {"customer_id": c}, "traits": {"batch": batch}}
                for c in customers
            ]
            response = client.post("/v1/events", json=events, headers=headers)
            if response.status_code == 202:
                acknowledged.extend(customers)
            return response

        assert send(0).status_code == 202
        broker.pause()
        try:
            stalled = send(1)
            assert stalled.status_code == 503
            assert stalled.json()["error"] == "ServiceUnavailable"
            assert int(stalled.headers["Retry-After"]) > 0
        finally:
            broker.resume()
        deadline = time.monotonic() + 30
        while send(2).status_code != 202:
            assert time.monotonic() < deadline, "ingest did not recover after the broker resumed"
        assert len(acknowledged) == 20

        # Every customer whose event got 202 reaches the real profile service.
        profile = real_fleet.url_of("profile")
        missing = set(acknowledged)

        def all_arrived() -> bool:
            missing.difference_update(
                c
                for c in list(missing)
                if httpx.get(f"{profile}/customers/{c}", headers=real_fleet.internal_headers()).status_code
                == 200
            )
            return not missing

        wait_until(all_arrived, timeout_s=60, what="every acknowledged event in the profile")

        admin = {"X-API-Key": ADMIN_KEY}
        wait_until(
            lambda: client.get(f"/v1/customers/{acknowledged[0]}", headers=admin).json()["degraded"] == [],
            timeout_s=30,
            what="a complete 360",
        )
        recsys = real_fleet.fleet.process_of("recsys").process
        recsys.send_signal(signal.SIGKILL)
        recsys.wait(timeout=10)
        try:
            # Another customer: the first one's complete 360 may come from the gateway's cache.
            other = acknowledged[1]
            degraded = client.get(f"/v1/customers/{other}", headers=admin)
            assert degraded.status_code == 200
            assert degraded.json()["degraded"] == ["recsys"]
            assert degraded.json()["recommendations"] is None
            assert degraded.json()["profile"]["id"] == other
        finally:
            real_fleet.kill_and_restart("recsys")
        wait_until(
            lambda: client.get(f"/v1/customers/{acknowledged[2]}", headers=admin).json()["degraded"] == [],
            timeout_s=30,
            what="the 360 to be complete once recsys is back",
        )
