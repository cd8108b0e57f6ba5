"""The real fleet for tests: the embedded broker and every service as its own process (``services.fleet``).

One fleet is started per test session (``real_fleet`` in tests/conftest.py) and shared by every test that
needs the gateway in front of the real services: the 360, the sub-routes, the fuzz, the demo data. A test
that must force a failure stalls (SIGSTOP) or kills the real process and restarts it, never a stand-in.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from services.fleet import DemoLoad, Fleet
from services.fleet import free_port_offset as fleet_port_offset
from shared.contracts import Topic
from shared.datasets import cdnow_transactions
from shared.kafka import EventPublisher, ensure_topics
from shared.replay import ReplayEvent, cdnow_events, movielens_catalog_events, movielens_events, replay
from shared.settings import KafkaSettings


def free_port_offset() -> int:
    """An offset at which every service port is free (``CRM_TEST_FLEET_PORT_OFFSET`` pins one), so two
    test runs on one machine, or a `crm up` beside them, do not collide."""
    pinned = os.environ.get("CRM_TEST_FLEET_PORT_OFFSET")
    return int(pinned) if pinned else fleet_port_offset()


DEMO_MOVIELENS_USERS = 120
"""MovieLens users replayed into the test fleet (all their ratings: about 13,000 events)."""
DEMO_CDNOW_CUSTOMERS = 300

# Small and quick models: the test fleet is about behaviour, not accuracy or speed.
TEST_ENVIRONMENT = {
    "CRM_SENTIMENT_CPU_BACKEND": "torch",
    "CRM_SENTIMENT_ZH_CPU_BACKEND": "torch",
    "CRM_SENTIMENT_THREADS": "1",
    "CRM_SENTIMENT_FIRST_START_CAP": "500",
    # Support: Chinese text on MiniLM; building e5 (~40 s of CPU) in every session is not what these test.
    "CRM_SUPPORT_CHINESE_ENCODER": "false",
    "CRM_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "CRM_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "CRM_GATEWAY_RATE_LIMIT_PER_S": "100000",
    "CRM_GATEWAY_RATE_LIMIT_BURST": "100000",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class RunningFleet:
    fleet: Fleet
    data_dir: Path

    @property
    def gateway(self) -> str:
        return self.fleet.url_of("gateway")

    @property
    def admin_key(self) -> str:
        assert self.fleet.admin_key is not None
        return self.fleet.admin_key

    @property
    def bootstrap(self) -> str:
        assert self.fleet.bootstrap is not None
        return self.fleet.bootstrap

    def url_of(self, service: str) -> str:
        return self.fleet.url_of(service)

    def internal_headers(self) -> dict[str, str]:
        """What the gateway presents to the services (tests read a service directly with it)."""
        return {"X-API-Key": self.fleet.internal_key}

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for the gateway, signed in with the admin key."""
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.gateway, headers={"X-API-Key": self.admin_key}, **kwargs)

    def publisher(self) -> EventPublisher:
        return EventPublisher(KafkaSettings(bootstrap=self.bootstrap), client_id="crm-tests")

    @contextmanager
    def stalled(self, service: str) -> Iterator[None]:
        """The service's process is stopped (SIGSTOP) inside the block: it accepts connections, answers nothing."""
        pid = self.fleet.process_of(service).process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def kill_and_restart(self, service: str, ready_timeout_s: float = 300.0) -> None:
        self.fleet.restart(service)
        self.fleet.wait_ready(ready_timeout_s)

    def log_of(self, service: str) -> str:
        return (self.data_dir / "logs" / f"{service}.log").read_text(errors="replace")


def start_fleet(data_dir: Path) -> Fleet:
    for name, value in TEST_ENVIRONMENT.items():
        os.environ.setdefault(name, value)  # the children inherit them (Fleet copies os.environ)
    os.environ.pop("CRM_KAFKA_BOOTSTRAP", None)
    fleet = Fleet(data_dir=data_dir, port_offset=free_port_offset())
    fleet.start_ready(600)
    return fleet


def movielens_users_slice(start: int, stop: int) -> list[str]:
    """MovieLens user ids ``start`` to ``stop - 1`` (they run 1..943)."""
    return [str(i) for i in range(start, stop)]


def cdnow_customers_slice(start: int, stop: int) -> list[str]:
    """The CDNOW sample's customer ids in order, from position ``start`` to ``stop - 1`` (ids are
    zero-padded and sparse: "00004", "00018", ...)."""
    return sorted({t.customer_id for t in cdnow_transactions(True)})[start:stop]


def demo_events(now: datetime) -> list[ReplayEvent]:
    """A slice of the real demo data as `crm up` loads it: the MovieLens catalog, then the first MovieLens
    users (all their ratings) and CDNOW customers, each data set shifted to end at ``now``."""
    users = movielens_users_slice(1, DEMO_MOVIELENS_USERS + 1)
    customers = cdnow_customers_slice(0, DEMO_CDNOW_CUSTOMERS)
    return [
        *movielens_catalog_events(now=now),
        *movielens_events(users=users, now=now),
        *cdnow_events(sample=True, customers=customers, now=now),
    ]


def fit_demo_models(running: RunningFleet) -> None:
    """What `crm up` does once the demo is applied: the profile's CLV and RFM clusters, the recommender."""
    DemoLoad(running.fleet, rate=0.0, stop=threading.Event(), progress=False, timeout_s=300).fit()


def load_demo(running: RunningFleet, events: Iterable[ReplayEvent]) -> int:
    ensure_topics(KafkaSettings(bootstrap=running.bootstrap), [Topic.INTERACTIONS, Topic.ITEM_UPDATED])
    publisher = running.publisher()
    try:
        return replay(events, publisher, progress=False)
    finally:
        publisher.close()


def profile_consumed(running: RunningFleet) -> float:
    """Events of the interactions topic the profile service has consumed (applied or skipped as seen)."""
    text = httpx.get(f"{running.url_of('profile')}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("crm_events_consumed_total{")
        and 'group="crm-profile"' in line
        and 'topic="crm.interactions.received.v1"' in line
    )


def wait_until(
    condition: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.5, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def lag_is_zero(running: RunningFleet) -> bool:
    """Every consumer group of every service has caught up (their ``crm_consumer_lag`` gauges are 0)."""
    for service in running.fleet.services:
        try:
            text = httpx.get(f"{running.url_of(service)}/metrics", timeout=5).text
        except httpx.HTTPError:
            return False
        for line in text.splitlines():
            if line.startswith("crm_consumer_lag{") and float(line.rsplit(" ", 1)[1]) > 0:
                return False
    return True
