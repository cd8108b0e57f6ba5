"""SQLAlchemy engines, sessions and the processed-event ledger every consumer group uses.

SQLite is the default everywhere (one file per service under ``data_dir``); PostgreSQL is used when a
service's ``database_url`` says so. The ledger lives in the same database as the service's state so
that "apply the events" and "remember their ids" commit in one transaction: exactly once in effect.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
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

from shared.logging import get_logger

log = get_logger(__name__)


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
            # Deleted rows are overwritten with zeros, not left in free pages: an erased customer's data
            # must not stay readable in the file (see forget_erased_data for the WAL).
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def forget_erased_data(session: Session) -> None:
    """Once ``session`` commits, make deleted data unreadable in the database files too.

    Call it from an erasure. On SQLite, ``secure_delete`` zeroes the deleted rows in the pages written
    from now on, but earlier versions of those pages stay in the write-ahead log until it is checkpointed
    and truncated; this does that after the commit (retrying while readers hold old snapshots). Other
    databases: nothing here (PostgreSQL's dead tuples go with autovacuum).
    """
    bind = session.get_bind()
    engine: Engine = bind.engine if isinstance(bind, Connection) else bind
    if engine.dialect.name != "sqlite" or session.info.get("forget_erased_data"):
        return
    session.info["forget_erased_data"] = True

    def checkpoint(_session: Session) -> None:
        _session.info.pop("forget_erased_data", None)
        for _ in range(20):
            with engine.connect() as connection:
                busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
            if busy is not None and busy[0] == 0:
                return
            time.sleep(0.05)
        log.warning("wal_checkpoint_incomplete", database=str(engine.url.database))

    event.listen(session, "after_commit", checkpoint, once=True)


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

    # Ids per INSERT: SQLite allows 32,766 bound parameters (since 3.32); each id is one.
    _CHUNK = 5000

    def __init__(self, engine: Engine, consumer_group: str) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"the event ledger supports SQLite and PostgreSQL, not {dialect}")
        if dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
            raise RuntimeError(
                f"SQLite {sqlite3.sqlite_version} is too old for the event ledger (needs 3.35+ for RETURNING)"
            )
        self.engine = engine
        self.consumer_group = consumer_group
        self.session_factory = make_session_factory(engine)
        ledger_metadata.create_all(engine, checkfirst=True)
        self._sqlite = dialect == "sqlite"

    def claim(self, session: Session, event_ids: Sequence[str]) -> set[str]:
        """Record the ids as applied in the caller's transaction and return those that were new.

        On the driver, one ``INSERT ... ON CONFLICT DO NOTHING`` per chunk (this is on every consumer's
        hot path), so the database itself decides which ids are new. PostgreSQL answers with
        ``RETURNING``: the answer holds even when another member of the group claims the same id at the
        same moment during a rebalance (the second insert waits for the first and returns nothing).
        SQLite runs one writer at a time, so there the insert's row count is enough in the usual case
        (every id new), which saves fetching a row per event; when some ids were seen before, the chunk
        is rolled back to a savepoint and claimed again with ``RETURNING`` to learn which.
        """
        if not event_ids:
            return set()
        connection = session.connection()
        ids = list(dict.fromkeys(event_ids))
        now = datetime.now(UTC)
        stamp: object = now.strftime("%Y-%m-%d %H:%M:%S.%f") if self._sqlite else now
        group = self.consumer_group
        fresh: set[str] = set()
        for start in range(0, len(ids), self._CHUNK):
            chunk = ids[start : start + self._CHUNK]
            if self._sqlite:
                # ("WHERE true" tells SQLite's parser that ON CONFLICT is not a join constraint.)
                sql = (
                    "INSERT INTO processed_events (consumer_group, event_id, processed_at) "
                    f"SELECT ?, column1, ? FROM (VALUES {', '.join(['(?)'] * len(chunk))}) WHERE true "
                    "ON CONFLICT DO NOTHING"
                )
                parameters = (group, stamp, *chunk)
                if not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
                    # pysqlite opens its transaction lazily, at the first write; a savepoint issued
                    # before that would open (and its release commit) a transaction of its own.
                    connection.exec_driver_sql("BEGIN")
                savepoint = connection.begin_nested()
                if connection.exec_driver_sql(sql, parameters).rowcount == len(chunk):
                    savepoint.commit()
                    fresh.update(chunk)
                    continue
                savepoint.rollback()
                rows = connection.exec_driver_sql(f"{sql} RETURNING event_id", parameters)
            else:
                rows = connection.exec_driver_sql(
                    "INSERT INTO processed_events (consumer_group, event_id, processed_at) "
                    "SELECT %s, unnest(%s::varchar[]), %s ON CONFLICT DO NOTHING RETURNING event_id",
                    (group, chunk, stamp),
                )
            fresh.update(row[0] for row in rows)
        return fresh

    def forget_before(self, cutoff: datetime, chunk: int = 5000) -> int:
        """Delete this group's ids recorded before ``cutoff``; returns how many went.

        An id may go once its event can no longer be delivered again, i.e. after the topics' retention
        (``KafkaSettings.ledger_retention_hours``). Deletes ``chunk`` ids per transaction, oldest ids
        first (ids sort by time), so a long backlog never holds the database's write lock for long.
        """
        if cutoff.tzinfo is None:
            raise ValueError("forget_before needs a timezone-aware cutoff (the ledger records UTC)")
        when = cutoff.astimezone(UTC)
        stamp: object = when.strftime("%Y-%m-%d %H:%M:%S.%f") if self._sqlite else when  # as claim stores it
        p = "?" if self._sqlite else "%s"  # the driver's placeholder
        sql = (
            f"DELETE FROM processed_events WHERE consumer_group = {p} AND event_id IN ("
            f"SELECT event_id FROM processed_events WHERE consumer_group = {p} AND processed_at < {p} "
            f"ORDER BY event_id LIMIT {p})"
        )
        forgotten = 0
        while True:
            with self.engine.begin() as connection:
                deleted = connection.exec_driver_sql(
                    sql, (self.consumer_group, self.consumer_group, stamp, chunk)
                ).rowcount
            forgotten += deleted
            if deleted < chunk:
                return forgotten

    def count(self) -> int:
        with self.engine.connect() as connection:
            result = connection.execute(
                select(processed_events.c.event_id).where(
                    processed_events.c.consumer_group == self.consumer_group
                )
            )
            return len(result.all())
