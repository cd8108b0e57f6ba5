"""All SQL of the support service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from services.support.models import (
    ArticleRow,
    Base,
    CustomerRow,
    FeedbackRow,
    IntentRow,
    ItemRow,
    MessageRow,
    TicketRow,
)


def create_tables(engine: Engine) -> None:
    Base.metadata.create_all(engine, checkfirst=True)


def intents(session: Session) -> list[IntentRow]:
    return list(session.scalars(select(IntentRow).order_by(IntentRow.position)))


def catalog_version(session: Session) -> tuple[int, datetime | None]:
    count, newest = session.execute(select(func.count(), func.max(IntentRow.updated_at))).one()
    return int(count), newest


def replace_intents(session: Session, rows: Sequence[IntentRow]) -> None:
    session.execute(delete(IntentRow))
    session.add_all(rows)
    session.flush()


def articles(session: Session) -> list[ArticleRow]:
    return list(session.scalars(select(ArticleRow).order_by(ArticleRow.id)))


def article(session: Session, article_id: str) -> ArticleRow | None:
    return session.get(ArticleRow, article_id)


def articles_version(session: Session) -> tuple[int, datetime | None]:
    count, newest = session.execute(select(func.count(), func.max(ArticleRow.updated_at))).one()
    return int(count), newest


def open_ticket(session: Session, customer_id: str, channel: str) -> TicketRow | None:
    """The customer's newest ticket on that channel (resolved ones too: a new message reopens it)."""
    return session.scalars(
        select(TicketRow)
        .where(TicketRow.customer_id == customer_id, TicketRow.channel == channel)
        .order_by(TicketRow.updated_at.desc())
        .limit(1)
    ).first()


def ticket(session: Session, ticket_id: str) -> TicketRow | None:
    return session.get(TicketRow, ticket_id)


def tickets(
    session: Session,
    *,
    queue: str | None = None,
    status: str | None = None,
    customer_id: str | None = None,
    limit: int = 50,
) -> list[TicketRow]:
    query = select(TicketRow)
    if queue:
        query = query.where(TicketRow.queue == queue)
    if status:
        query = query.where(TicketRow.status == status)
    if customer_id:
        query = query.where(TicketRow.customer_id == customer_id)
    return list(session.scalars(query.order_by(TicketRow.updated_at.desc()).limit(limit)))


def messages(session: Session, ticket_id: str) -> list[MessageRow]:
    return list(
        session.scalars(
            select(MessageRow).where(MessageRow.ticket_id == ticket_id).order_by(MessageRow.received_at)
        )
    )


def feedback_counts(session: Session) -> dict[str, dict[str, int]]:
    rows = session.execute(
        select(FeedbackRow.article_id, FeedbackRow.action, func.count()).group_by(
            FeedbackRow.article_id, FeedbackRow.action
        )
    )
    out: dict[str, dict[str, int]] = {}
    for article_id, action, count in rows:
        out.setdefault(article_id, {})[action] = int(count)
    return out


def customer(session: Session, customer_id: str) -> CustomerRow | None:
    return session.get(CustomerRow, customer_id)


def customer_for_update(session: Session, customer_id: str) -> CustomerRow:
    row = session.get(CustomerRow, customer_id)
    if row is None:
        row = CustomerRow(customer_id=customer_id, revenue=0.0, orders={})
        session.add(row)
    return row


def item_ids(session: Session) -> set[str]:
    return set(session.scalars(select(ItemRow.item_id)))


def upsert_items(session: Session, items: Sequence[tuple[str, str]]) -> None:
    for item_id, name in items:
        row = session.get(ItemRow, item_id)
        if row is None:
            session.add(ItemRow(item_id=item_id, name=name))
        else:
            row.name = name


def erase_customer(session: Session, customer_id: str) -> int:
    """Delete the customer's tickets, messages, feedback and context; returns tickets removed."""
    removed = len(tickets(session, customer_id=customer_id, limit=1_000_000))
    session.execute(delete(TicketRow).where(TicketRow.customer_id == customer_id))
    session.execute(delete(MessageRow).where(MessageRow.customer_id == customer_id))
    session.execute(delete(FeedbackRow).where(FeedbackRow.customer_id == customer_id))
    session.execute(delete(CustomerRow).where(CustomerRow.customer_id == customer_id))
    return removed


def merge_customers(session: Session, survivor_id: str, merged_id: str) -> None:
    """Tickets and messages of the merged customer move to the survivor; context adds up."""
    for model in (TicketRow, MessageRow, FeedbackRow):
        session.execute(update(model).where(model.customer_id == merged_id).values(customer_id=survivor_id))
    merged = session.get(CustomerRow, merged_id)
    if merged is not None:
        survivor = customer_for_update(session, survivor_id)
        survivor.name = survivor.name or merged.name
        survivor.revenue = (survivor.revenue or 0.0) + merged.revenue
        survivor.orders = {**merged.orders, **(survivor.orders or {})}
        survivor.churn_band = survivor.churn_band or merged.churn_band
        session.delete(merged)


def as_dict(row: Any) -> dict[str, Any]:
    return {c.name: getattr(row, c.name) for c in row.__table__.columns}
