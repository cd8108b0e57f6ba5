"""All SQL of the churn service. Functions take the caller's session and never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from services.churn.features import Activity
from services.churn.models import (
    ActivityRow,
    MetaRow,
    ReactionRow,
    RuleRow,
    ScoreHistoryRow,
    ScoreRow,
    SegmentRow,
    TraitRow,
)

AS_OF_KEY = "latest_event_time"


def add_activity(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(ActivityRow.__table__.insert(), list(rows))


def histories(session: Session, customer_ids: Iterable[str]) -> dict[str, list[Activity]]:
    ids = list(set(customer_ids))
    out: dict[str, list[Activity]] = {c: [] for c in ids}
    table = ActivityRow.__table__
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = session.execute(
            select(table.c.customer_id, table.c.time, table.c.kind, table.c.amount, table.c.value).where(
                table.c.customer_id.in_(chunk)
            )
        )
        for customer, time, kind, amount, value in rows:
            out[customer].append(Activity(time, kind, amount or 0.0, float("nan") if value is None else value))
    return out


def latest_event_time(session: Session) -> float | None:
    row = session.get(MetaRow, AS_OF_KEY)
    return row.value if row is not None else None


def advance_event_time(session: Session, time: float) -> None:
    row = session.get(MetaRow, AS_OF_KEY)
    if row is None:
        session.add(MetaRow(key=AS_OF_KEY, value=time))
    elif time > row.value:
        row.value = time


def scores(session: Session, customer_ids: Iterable[str]) -> dict[str, ScoreRow]:
    ids = list(set(customer_ids))
    out: dict[str, ScoreRow] = {}
    for start in range(0, len(ids), 500):
        for row in session.scalars(select(ScoreRow).where(ScoreRow.customer_id.in_(ids[start : start + 500]))):
            out[row.customer_id] = row
    return out


def add_history(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(ScoreHistoryRow.__table__.insert(), list(rows))


def recent_probabilities(session: Session, customer_id: str, limit: int) -> list[float]:
    """Most recent first."""
    rows = session.execute(
        select(ScoreHistoryRow.probability)
        .where(ScoreHistoryRow.customer_id == customer_id)
        .order_by(ScoreHistoryRow.id.desc())
        .limit(limit)
    )
    return [r[0] for r in rows]


def at_risk(session: Session, min_probability: float, limit: int) -> list[ScoreRow]:
    """Ranked by value at risk (probability x value) where the value is known, then by probability."""
    at_stake = ScoreRow.probability * ScoreRow.value
    query = (
        select(ScoreRow)
        .where(ScoreRow.probability >= min_probability)
        .order_by(ScoreRow.value.is_(None), at_stake.desc(), ScoreRow.probability.desc(), ScoreRow.customer_id)
        .limit(limit)
    )
    return list(session.scalars(query))


def clv(session: Session, customer_ids: Iterable[str]) -> dict[str, float]:
    ids = list(set(customer_ids))
    rows = session.execute(select(TraitRow.customer_id, TraitRow.clv).where(TraitRow.customer_id.in_(ids)))
    return {c: v for c, v in rows if v is not None}


def set_clv(session: Session, customer_id: str, value: float) -> None:
    row = session.get(TraitRow, customer_id)
    if row is None:
        session.add(TraitRow(customer_id=customer_id, clv=value))
    else:
        row.clv = value


def segments(session: Session, customer_id: str) -> list[str]:
    rows = session.execute(
        select(SegmentRow.segment_id, SegmentRow.segment_name).where(SegmentRow.customer_id == customer_id)
    )
    return [name for pair in rows for name in pair]


def set_segment(session: Session, customer_id: str, segment_id: str, name: str, joined: bool) -> None:
    row = session.get(SegmentRow, (customer_id, segment_id))
    if joined and row is None:
        session.add(SegmentRow(customer_id=customer_id, segment_id=segment_id, segment_name=name))
    elif not joined and row is not None:
        session.delete(row)


def erase_customer(session: Session, customer_id: str) -> None:
    """Forget the customer everywhere, including events that were merged into someone else."""
    session.execute(
        delete(ActivityRow).where(
            or_(ActivityRow.customer_id == customer_id, ActivityRow.origin_customer_id == customer_id)
        )
    )
    for table in (ScoreRow, ScoreHistoryRow, SegmentRow, TraitRow, ReactionRow):
        session.execute(delete(table).where(table.customer_id == customer_id))


def merge_customers(session: Session, survivor_id: str, merged_id: str) -> None:
    session.execute(update(ActivityRow).where(ActivityRow.customer_id == merged_id).values(customer_id=survivor_id))
    for table in (ScoreRow, ScoreHistoryRow):
        session.execute(delete(table).where(table.customer_id == merged_id))
    for row in list(session.scalars(select(SegmentRow).where(SegmentRow.customer_id == merged_id))):
        set_segment(session, survivor_id, row.segment_id, row.segment_name, True)
        session.delete(row)
    session.execute(update(ReactionRow).where(ReactionRow.customer_id == merged_id).values(customer_id=survivor_id))


def unmerge_customers(session: Session, survivor_id: str, merged_id: str) -> None:
    session.execute(
        update(ActivityRow)
        .where(ActivityRow.customer_id == survivor_id, ActivityRow.origin_customer_id == merged_id)
        .values(customer_id=merged_id)
    )


def has_activity(session: Session, customer_id: str) -> bool:
    return session.scalar(select(func.count()).where(ActivityRow.customer_id == customer_id)) != 0


# -- rules and reactions --------------------------------------------------------------------------


def rules(session: Session, enabled_only: bool = False) -> list[RuleRow]:
    query = select(RuleRow).order_by(RuleRow.priority.desc(), RuleRow.id)
    if enabled_only:
        query = query.where(RuleRow.enabled.is_(True))
    return list(session.scalars(query))


def rule(session: Session, rule_id: str) -> RuleRow | None:
    return session.get(RuleRow, rule_id)


def count_rules(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(RuleRow)) or 0)


def add_reaction(session: Session, customer_id: str, rule_id: str, action: str, reaction: str) -> ReactionRow:
    row = ReactionRow(customer_id=customer_id, rule_id=rule_id, action=action, reaction=reaction)
    session.add(row)
    session.flush()
    return row


def reaction_counts(session: Session) -> dict[str, dict[str, int]]:
    rows = session.execute(
        select(ReactionRow.rule_id, ReactionRow.reaction, func.count()).group_by(ReactionRow.rule_id, ReactionRow.reaction)
    )
    out: dict[str, dict[str, int]] = {}
    for rule_id, reaction, count in rows:
        out.setdefault(rule_id, {"accepted": 0, "rejected": 0, "ignored": 0})[reaction] = int(count)
    return out
