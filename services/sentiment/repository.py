"""All SQL of the sentiment service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.sentiment.models import SentimentScore


def save_scores(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert scores; a row for an event id already stored is left alone (re-delivery is harmless)."""
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(SentimentScore).on_conflict_do_nothing(index_elements=["source_event_id"]), list(rows)
    )


def erase_customer(session: Session, customer_id: str) -> int:
    """Delete every score of the customer (as current or as pre-merge owner)."""
    result = session.execute(
        delete(SentimentScore).where(
            (SentimentScore.customer_id == customer_id) | (SentimentScore.original_customer_id == customer_id)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def merge_customers(session: Session, survivor_id: str, merged_id: str) -> None:
    session.execute(
        update(SentimentScore).where(SentimentScore.customer_id == merged_id).values(customer_id=survivor_id)
    )


def unmerge_customers(session: Session, survivor_id: str, merged_id: str) -> None:
    session.execute(
        update(SentimentScore)
        .where(SentimentScore.customer_id == survivor_id, SentimentScore.original_customer_id == merged_id)
        .values(customer_id=merged_id)
    )


def scores_for_customer(session: Session, customer_id: str, limit: int) -> list[SentimentScore]:
    rows = session.scalars(
        select(SentimentScore)
        .where(SentimentScore.customer_id == customer_id)
        .order_by(SentimentScore.scored_at.desc())
        .limit(limit)
    )
    return list(rows)


def customer_summary(session: Session, customer_id: str) -> tuple[int, float | None]:
    count, mean = session.execute(
        select(func.count(), func.avg(SentimentScore.score)).where(SentimentScore.customer_id == customer_id)
    ).one()
    return int(count), (float(mean) if mean is not None else None)
