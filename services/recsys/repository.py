"""All SQL of the recsys service."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, case, delete, func, select, update
from sqlalchemy.orm import Session

from services.recsys.models import Base, InteractionRow, ItemRow, ReactionRow


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


@dataclass(frozen=True, slots=True)
class CatalogItem:
    item_id: str
    name: str
    categories: tuple[str, ...]
    attributes: dict[str, Any]
    event_time: float
    event_id: str


def _catalog_item(row: ItemRow) -> CatalogItem:
    return CatalogItem(
        row.item_id,
        row.name,
        tuple(row.categories or ()),
        dict(row.attributes or {}),
        row.event_time,
        row.event_id,
    )


def upsert_items(session: Session, items: Iterable[CatalogItem]) -> list[CatalogItem]:
    """Write the newest version of each item (by event time; ties: the later event id); returns the items
    that changed."""
    newest: dict[str, CatalogItem] = {}
    for item in items:
        seen = newest.get(item.item_id)
        if seen is None or (item.event_time, item.event_id) >= (seen.event_time, seen.event_id):
            newest[item.item_id] = item
    if not newest:
        return []
    existing = {
        row.item_id: row for row in session.scalars(select(ItemRow).where(ItemRow.item_id.in_(list(newest))))
    }
    changed: list[CatalogItem] = []
    for item in newest.values():
        row = existing.get(item.item_id)
        if row is not None and (row.event_time, row.event_id) > (item.event_time, item.event_id):
            continue  # a newer version is already stored
        if row is None:
            session.add(
                ItemRow(
                    item_id=item.item_id,
                    name=item.name,
                    categories=list(item.categories),
                    attributes=item.attributes,
                    event_time=item.event_time,
                    event_id=item.event_id,
                )
            )
        else:
            row.name, row.categories, row.attributes = item.name, list(item.categories), item.attributes
            row.event_time, row.event_id = item.event_time, item.event_id
        changed.append(item)
    session.flush()
    return changed


def catalog(session: Session) -> dict[str, CatalogItem]:
    """Every catalog item by id."""
    return {row.item_id: _catalog_item(row) for row in session.scalars(select(ItemRow))}


def item_interactions(session: Session, item_id: str) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(InteractionRow).where(InteractionRow.item_id == item_id)
        ).scalar_one()
    )


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
