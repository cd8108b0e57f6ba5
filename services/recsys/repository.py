"""All SQL of the recsys service."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, case, delete, func, select, update
from sqlalchemy.orm import Session

from services.recsys.models import Base, InteractionRow, ReactionRow


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def create_tables(engine: Engine) -> None:
    Base.metadata.create_all(engine, checkfirst=True)


@dataclass(frozen=True, slots=True)
class NewInteraction:
    event_id: str
    customer_id: str
    item_id: str
    kind: str
    weight: float
    occurred_at: datetime


def add_interactions(session: Session, rows: Iterable[NewInteraction]) -> None:
    session.add_all(
        InteractionRow(
            event_id=r.event_id,
            customer_id=r.customer_id,
            origin_customer_id=r.customer_id,
            item_id=r.item_id,
            kind=r.kind,
            weight=r.weight,
            occurred_at=r.occurred_at,
        )
        for r in rows
    )
    session.flush()


def history(session: Session, customer_id: str) -> dict[str, float]:
    """The customer's distinct items with their summed weights."""
    rows = session.execute(
        select(InteractionRow.item_id, func.sum(InteractionRow.weight))
        .where(InteractionRow.customer_id == customer_id)
        .group_by(InteractionRow.item_id)
    )
    return {item: float(weight) for item, weight in rows}


def has_customer(session: Session, customer_id: str) -> bool:
    return (
        session.execute(
            select(InteractionRow.id).where(InteractionRow.customer_id == customer_id).limit(1)
        ).first()
        is not None
    )


def distinct_pairs(session: Session, batch: int = 50_000) -> Iterator[tuple[str, str]]:
    """Every distinct (customer, item) pair: the training data."""
    result = session.execute(
        select(InteractionRow.customer_id, InteractionRow.item_id)
        .distinct()
        .execution_options(yield_per=batch)
    )
    for customer, item in result:
        yield str(customer), str(item)


def item_counts(session: Session) -> dict[str, int]:
    """Interactions per item (popularity)."""
    rows = session.execute(select(InteractionRow.item_id, func.count()).group_by(InteractionRow.item_id))
    return {item: int(n) for item, n in rows}


def count_interactions(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(InteractionRow)).scalar_one())


def erase_customer(session: Session, customer_id: str) -> tuple[int, int]:
    """Delete the customer's interactions and reactions; returns how many of each."""
    interactions = session.execute(
        delete(InteractionRow).where(
            (InteractionRow.customer_id == customer_id) | (InteractionRow.origin_customer_id == customer_id)
        )
    )
    reactions = session.execute(delete(ReactionRow).where(ReactionRow.customer_id == customer_id))
    return _rowcount(interactions), _rowcount(reactions)


def merge_customers(session: Session, survivor_id: str, merged_id: str) -> int:
    """Move the merged customer's interactions to the survivor."""
    moved = session.execute(
        update(InteractionRow).where(InteractionRow.customer_id == merged_id).values(customer_id=survivor_id)
    )
    session.execute(
        update(ReactionRow).where(ReactionRow.customer_id == merged_id).values(customer_id=survivor_id)
    )
    return _rowcount(moved)


def unmerge_customers(session: Session, survivor_id: str, merged_id: str) -> int:
    """Undo a merge: rows that originally named ``merged_id`` go back to it."""
    moved = session.execute(
        update(InteractionRow)
        .where(
            and_(InteractionRow.customer_id == survivor_id, InteractionRow.origin_customer_id == merged_id)
        )
        .values(customer_id=merged_id)
    )
    return _rowcount(moved)


def add_reaction(session: Session, row: ReactionRow) -> None:
    session.add(row)


def reaction_report(session: Session) -> dict[str, dict[str, int]]:
    """Impressions, clicks and dismissals per model version."""
    rows = session.execute(
        select(
            ReactionRow.model_version,
            func.sum(case((ReactionRow.reaction == "impression", 1), else_=0)),
            func.sum(case((ReactionRow.reaction == "click", 1), else_=0)),
            func.sum(case((ReactionRow.reaction == "dismiss", 1), else_=0)),
        ).group_by(ReactionRow.model_version)
    )
    return {
        version: {"impressions": int(i or 0), "clicks": int(c or 0), "dismissals": int(d or 0)}
        for version, i, c, d in rows
    }
