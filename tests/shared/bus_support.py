"""Test support for the bus: a tiny effect table and helpers to drive real consumers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from shared.kafka import InboundEvent

metadata = MetaData()
applied = Table(
    "applied",
    metadata,
    # No unique constraint on purpose: a duplicate application must be visible, not rejected.
    Column("row", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String, nullable=False),
    Column("consumer", String, nullable=False),
    Column("customer", String, nullable=False),
    Column("seq", Integer, nullable=False),
)


def recording_handler(consumer_name: str) -> Callable[[Sequence[InboundEvent], Session], None]:
    def handle(events: Sequence[InboundEvent], session: Session) -> None:
        session.execute(
            insert(applied),
            [
                {
                    "event_id": e.id,
                    "consumer": consumer_name,
                    "customer": e.payload.customer.customer_id,  # type: ignore[attr-defined]
                    "seq": int(e.payload.item_id.split("-")[1]),  # type: ignore[attr-defined]
                }
                for e in events
            ],
        )

    return handle


def applied_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(applied)).scalar_one())


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
