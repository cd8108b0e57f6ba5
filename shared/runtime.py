"""What every service's lifespan wires up: its database, the event ledger, the publisher and the
consumers, and the readiness checks for them. One object per running app, kept on ``app.state``."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.app import register_readiness
from shared.db import (
    EventLedger,
    database_is_reachable,
    make_engine,
    make_session_factory,
    sqlite_url,
    unit_of_work,
)
from shared.kafka import EventConsumer, EventHandler, EventPublisher, ensure_topics
from shared.logging import configure_logging, get_logger
from shared.settings import ServiceSettings

log = get_logger(__name__)


class ServiceRuntime:
    def __init__(self, service: str, settings: ServiceSettings, database_url: str | None = None) -> None:
        self.service = service
        self.settings = settings
        configure_logging(settings.log_level, json=settings.json_logs)
        self.engine: Engine = make_engine(database_url or sqlite_url(settings.data_dir, service))
        self.session_factory: sessionmaker[Session] = make_session_factory(self.engine)
        self.publisher: EventPublisher | None = None
        self.consumers: list[EventConsumer] = []

    def connect_kafka(self, topics: Iterable[str]) -> EventPublisher:
        """Create the topics this service touches (idempotent) and open the publisher."""
        kafka = self.settings.kafka
        ensure_topics(kafka, topics)
        self.publisher = EventPublisher(kafka, client_id=f"{kafka.client_id}-{self.service}")
        return self.publisher

    def add_consumer(
        self,
        group_id: str,
        topics: Sequence[str],
        handler: EventHandler,
        event_types: Iterable[str] | None = None,
    ) -> EventConsumer | None:
        """Register a consumer group member; it starts with :meth:`start` unless consumers are disabled."""
        if not self.settings.consume_events:
            return None
        consumer = EventConsumer(
            settings=self.settings.kafka,
            group_id=group_id,
            topics=topics,
            handler=handler,
            ledger=EventLedger(self.engine, group_id),
            event_types=event_types,
            dead_letters=self.publisher,
        )
        self.consumers.append(consumer)
        return consumer

    def start(self, app: FastAPI) -> None:
        tune_garbage_collection()
        register_readiness(app, "database", lambda: database_is_reachable(self.engine))
        if self.publisher is not None:
            publisher = self.publisher
            register_readiness(app, "broker", publisher.is_connected)
        for consumer in self.consumers:
            consumer.start()
        if self.consumers:
            register_readiness(app, "consumers", lambda: all(c.running for c in self.consumers))

    def close(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        if self.publisher is not None:
            self.publisher.close()
        self.engine.dispose()
        log.info("service_stopped", service=self.service)


def tune_garbage_collection() -> None:
    """Fewer, cheaper cyclic-GC passes for a long-running event processor (called once start-up is done).

    A consumer keeps about fifteen container objects per event (models, dicts, sets) alive until its
    batch is applied: some 30,000 for a 2,000-event poll. CPython starts a young collection when the
    count of *live* young container objects passes the first threshold, and every object it finds alive
    is promoted and traversed again by the older generations' collections. With the default
    (700, 10, 10) that is a collection every ~50 events; with 20,000, one or two per poll over a whole
    threshold's worth of live objects (``bench/bus.py`` measured about 3 µs per event of GC). Freezing
    what start-up created and a young threshold of 100,000 keeps a poll's batch below it: collections
    then come from reference cycles piling up as garbage (SQLAlchemy sessions, futures), with little
    live data to traverse. Reference cycles are still collected, in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 20)


def request_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: a session from the app's runtime that commits when the request succeeds and
    rolls back when it raises (services flush at most)."""
    runtime: ServiceRuntime = request.app.state.runtime
    with unit_of_work(runtime.session_factory) as session:
        yield session
