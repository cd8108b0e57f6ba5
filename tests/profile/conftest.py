"""Fixtures of the profile tests: a migrated store driven directly, and the app on a real broker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from services.profile.app import create_app
from services.profile.db import migrate
from services.profile.models import Base
from services.profile.pii import PiiVault
from services.profile.service import Outbound, ProfileService
from services.profile.settings import ProfileSettings
from shared.contracts import CloudEvent, Topic, stable_event_id
from shared.db import make_engine, make_session_factory, unit_of_work
from shared.kafka import InboundEvent, parse_record
from shared.settings import KafkaSettings

TEST_KEY = "profile-tests-secret"


def event(
    type_: str, data: dict[str, Any], *, at: datetime | None = None, id: str | None = None, **extra: Any
) -> CloudEvent:
    """A CloudEvent as an outside system would send it (``type_`` without the ``crm.``/``.v1``)."""
    full = type_ if type_.startswith("crm.") else f"crm.{type_}.v1"
    return CloudEvent.new(full, {**data, **extra}, source="/tests", id=id, time=at or datetime.now(UTC))


def inbound(events: Sequence[CloudEvent], topic: str = Topic.INTERACTIONS) -> list[InboundEvent]:
    """Parse events exactly as the consumer does."""
    out = []
    for offset, e in enumerate(events):
        envelope, payload = parse_record(e.to_json_bytes())
        out.append(InboundEvent(envelope, payload, topic, 0, offset))
    return out


class Store:
    """The profile service on a migrated database, fed directly (no broker)."""

    def __init__(self, url: str, service: ProfileService | None = None) -> None:
        self.engine = make_engine(url)
        migrate(self.engine)
        self.factory: sessionmaker[Session] = make_session_factory(self.engine)
        self.service = service or ProfileService(PiiVault(TEST_KEY), None)

    def apply(self, events: Sequence[CloudEvent]) -> list[Outbound]:
        with unit_of_work(self.factory) as session:
            return self.service.apply_interactions(inbound(events), session)

    def signals(self, events: Sequence[CloudEvent], topic: str) -> list[Outbound]:
        with unit_of_work(self.factory) as session:
            return self.service.apply_signals(inbound(events, topic), session)

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every profile table, sorted: to assert that something changed nothing."""
        out = {}
        with self.engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                rows = connection.execute(select(table)).all()
                out[table.name] = sorted((tuple(map(repr, r)) for r in rows), key=repr)
        return out

    def all_text(self) -> str:
        """Every value in every table of the database (ledger included), as one string to search."""
        parts = []
        with self.engine.connect() as connection:
            for name in inspect(connection).get_table_names():
                table = Base.metadata.tables.get(name)
                if table is None:
                    from sqlalchemy import MetaData, Table

                    table = Table(name, MetaData(), autoload_with=connection)
                for row in connection.execute(select(table)).all():
                    parts.append(" ".join(repr(v) for v in row))
        return "\n".join(parts)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.engine.dispose()


@pytest.fixture
def profile_settings(tmp_path: Path, kafka_settings: KafkaSettings, database_url: str) -> ProfileSettings:
    return ProfileSettings(
        data_dir=str(tmp_path),
        database_url=database_url,
        kafka=kafka_settings,
        consume_events=False,
        pii_key=SecretStr(TEST_KEY),
        environment="test",
    )


@pytest.fixture
def client(profile_settings: ProfileSettings) -> Iterator[TestClient]:
    with TestClient(create_app(profile_settings)) as c:
        yield c


def feed(client: TestClient, events: Sequence[CloudEvent]) -> list[Outbound]:
    """Apply events through the running app's service, publishing what it produces, like the consumer."""
    service: ProfileService = client.app.state.profile_service  # type: ignore[attr-defined]
    with unit_of_work(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        outbound = service.apply_interactions(inbound(events), session)
        service.publish(outbound)
    return outbound


def eid(*parts: object) -> str:
    return stable_event_id("profile-test", *parts)
