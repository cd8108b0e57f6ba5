"""SQLAlchemy engines, sessions and the processed-event ledger every consumer group uses.

SQLite is the default everywhere (one file per service under ``data_dir``); PostgreSQL is used when a
service's ``database_url`` says so. The ledger lives in the same database as the service's state so
that "apply the events" and "remember their ids" commit in one transaction: exactly once in effect.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.orm import Session, sessionmaker


def sqlite_url(data_dir: str | Path, name: str) -> str:
    """URL of the service's SQLite file, creating the folder."""
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(path / f'{name}.db').resolve()}"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings this fleet relies on (WAL and foreign keys on SQLite)."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def database_is_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


ledger_metadata = MetaData()
processed_events = Table(
    "processed_events",
    ledger_metadata,
    Column("consumer_group", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    # One B-tree keyed by (group, id) instead of a rowid table plus an index: ~20% less per claim.
    sqlite_with_rowid=False,
)


class EventLedger:
    """Remembers which event ids a consumer group has applied, inside the caller's transaction."""

    def __init__(self, engine: Engine, consumer_group: str) -> None:
        self.engine = engine
        self.consumer_group = consumer_group
        self.session_factory = make_session_factory(engine)
        ledger_metadata.create_all(engine, checkfirst=True)
        self._sqlite = engine.dialect.name == "sqlite"
        self._placeholder = p = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._claim_sql = (
            f"INSERT INTO processed_events (consumer_group, event_id, processed_at) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT DO NOTHING"
        )

    def claim(self, session: Session, event_ids: Sequence[str]) -> set[str]:
        """Record the ids as applied in the caller's transaction and return those that were new.

        Both statements run on the driver (no ORM overhead): this is on every consumer's hot path.
        """
        if not event_ids:
            return set()
        connection = session.connection()
        seen: set[str] = set()
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start : start + 500]
            marks = ", ".join([self._placeholder] * len(chunk))
            rows = connection.exec_driver_sql(
                "SELECT event_id FROM processed_events "
                f"WHERE consumer_group = {self._placeholder} AND event_id IN ({marks})",
                (self.consumer_group, *chunk),
            )
            seen.update(row[0] for row in rows)
        fresh = set(event_ids) - seen
        if fresh:
            now = datetime.now(UTC)
            stamp: object = now.strftime("%Y-%m-%d %H:%M:%S.%f") if self._sqlite else now
            group = self.consumer_group
            connection.exec_driver_sql(self._claim_sql, [(group, event_id, stamp) for event_id in fresh])
        return fresh

    def count(self) -> int:
        with self.engine.connect() as connection:
            result = connection.execute(
                select(processed_events.c.event_id).where(
                    processed_events.c.consumer_group == self.consumer_group
                )
            )
            return len(result.all())
