"""The gateway in front of the real profile and recsys processes, on a broker that gets paused.

Acceptance: with the broker paused (SIGSTOP) ingest answers 503 and, once resumed, every event that got
202 is in the profile; with the recsys process killed the 360 answers 200 with ``degraded: ["recsys"]``.
The real services train their start-up models, so this takes a minute or more (marked slow). Churn and
sentiment are stand-ins here so that ``degraded`` must name exactly the killed service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from shared.auth import Scope
from shared.broker import EmbeddedBroker, free_port
from shared.settings import KafkaSettings
from tests.gateway.conftest import make_settings
from tests.gateway.support import ADMIN_KEY, make_key, serving, stand_in_churn, stand_in_sentiment

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 300


def spawn(service: str, port: int, bootstrap: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CRM_KAFKA_BOOTSTRAP=bootstrap, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env[f"CRM_{service.upper()}_DATA_DIR"] = str(data_dir / service)
    command = [sys.executable, "-m", "uvicorn", f"services.{service}.app:create_app", "--factory"]
    command += ["--port", str(port), "--log-level", "warning"]
    with (data_dir / f"{service}.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url} exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready within {READY_TIMEOUT_S}s")


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.mark.slow
def test_real_fleet_paused_broker_and_killed_recsys(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    ports = {"profile": free_port(), "recsys": free_port()}
    processes = {name: spawn(name, port, broker.bootstrap, tmp_path) for name, port in ports.items()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        for name, process in processes.items():
            wait_ready(urls[name], process)
        with serving(stand_in_churn()) as churn, serving(stand_in_sentiment()) as sentiment:
            kafka = kafka_settings.model_copy(update={"bootstrap": broker.bootstrap})
            settings = make_settings(
                kafka,
                tmp_path / "gateway",
                publish_timeout_s=1.5,
                profile_url=urls["profile"],
                recsys_url=urls["recsys"],
                churn_url=churn.url,
                sentiment_url=sentiment.url,
            )
            with TestClient(create_app(settings)) as client:
                headers = {"X-API-Key": make_key(client, Scope.EVENTS_WRITE)}
                acknowledged: list[str] = []

                def send(batch: int) -> int:
                    customers = [f"c-{unique}-{batch}-{i}" for i in range(10)]
                    events = [
                        {"type": "identify", "customer": {"customer_id": c}, "traits": {"batch": batch}}
                        for c in customers
                    ]
                    response = client.post("/v1/events", json=events, headers=headers)
                    if response.status_code == 202:
                        acknowledged.extend(customers)
                    return response.status_code

                assert send(0) == 202
                broker.pause()
                try:
                    assert send(1) == 503
                finally:
                    broker.resume()
                deadline = time.monotonic() + 30
                while send(2) != 202:
                    assert time.monotonic() < deadline, "ingest did not recover after the broker resumed"
                assert len(acknowledged) == 20

                # Every customer whose event got 202 reaches the real profile service.
                deadline = time.monotonic() + 60
                missing = set(acknowledged)
                while missing and time.monotonic() < deadline:
                    missing = {
                        c for c in missing if httpx.get(f"{urls['profile']}/customers/{c}").status_code != 200
                    }
                    time.sleep(0.3)
                assert not missing

                customer = acknowledged[0]
                whole = client.get(f"/v1/customers/{customer}", headers={"X-API-Key": ADMIN_KEY})
                assert whole.status_code == 200
                assert whole.json()["degraded"] == []
                assert whole.json()["recommendations"] is not None

                processes["recsys"].send_signal(signal.SIGKILL)
                processes["recsys"].wait(timeout=10)
                # Another customer: the first one's complete 360 may be served from the gateway's cache
                # (it is fresh: no event about them since), so the fan-out is asked about one never read.
                other = acknowledged[1]
                degraded = client.get(f"/v1/customers/{other}", headers={"X-API-Key": ADMIN_KEY})
                assert degraded.status_code == 200
                assert degraded.json()["degraded"] == ["recsys"]
                assert degraded.json()["recommendations"] is None
                assert degraded.json()["profile"]["id"] == other
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
