"""Fixtures every test package shares: the real embedded broker, Kafka settings, databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from shared.broker import EmbeddedBroker
from shared.contracts import Topic, utcnow
from shared.db import make_engine
from shared.settings import KafkaSettings
from tests.fleet_support import (
    RunningFleet,
    demo_events,
    fit_demo_models,
    lag_is_zero,
    load_demo,
    profile_consumed,
    start_fleet,
    wait_until,
)

POSTGRES_URL = os.environ.get("CRM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka-compatible broker: CRM_KAFKA_BOOTSTRAP when set, else the embedded Tansu."""
    external = os.environ.get("CRM_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=kafka_bootstrap,
        partitions=2,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        poll_timeout_ms=100,
        retry_backoff_ms=10,
    )


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names, so tests never see each other's events."""
    return uuid.uuid4().hex[:10]


def postgres_reachable() -> bool:
    try:
        engine = make_engine(POSTGRES_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """Each test using this runs on SQLite, and on PostgreSQL (a fresh schema) when reachable."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
        return
    base = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = make_engine(base)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def real_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    """The whole fleet as processes (broker, every service), with a slice of the real demo data applied.

    Started once per test session; tests that change it (kill a process, stall one) put it back.
    """
    data_dir = tmp_path_factory.mktemp("fleet")
    fleet = start_fleet(data_dir)
    running = RunningFleet(fleet, data_dir)
    try:
        events = demo_events(utcnow())
        load_demo(running, events)
        sent = sum(1 for e in events if e.topic == Topic.INTERACTIONS)
        wait_until(
            lambda: profile_consumed(running) >= sent and lag_is_zero(running),
            timeout_s=300,
            what=f"the {sent} demo events to be applied by every service",
        )
        fit_demo_models(running)  # CLV, RFM clusters and the recommender, as `crm up` does after its load
        yield running
    finally:
        fleet.stop()
