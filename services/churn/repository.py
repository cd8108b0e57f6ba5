"""All SQL of the churn service. Functions take the caller's session and never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.churn.ml.features import Activity
from services.churn.models import (
    ActivityRow,
    ConsentRow,
    MetaRow,
    ReactionRow,
    RuleRow,
    ScoreRow,
    SegmentRow,
    SupportSignalRow,
    TraitRow,
)
from services.churn.support_signals import SupportSignal

AS_OF_KEY = "latest_event_time"

ACTIVITY = cast(Table, ActivityRow.__table__)
SCORES = cast(Table, ScoreRow.__table__)
_activity = ACTIVITY
_ACTIVITY_OF = select(
    _activity.c.customer_id, _activity.c.time, _activity.c.kind, _activity.c.amount, _activity.c.value
)
# Statements built once: constructing them costs more than SQLite takes to run them on the hot path.
_ACTIVITY_OF_ONE = _ACTIVITY_OF.where(_activity.c.customer_id == bindparam("customer_id"))
_ACTIVITY_OF_MANY = _ACTIVITY_OF.where(_activity.c.customer_id.in_(bindparam("ids", expanding=True)))
_RECENT_OF_ONE = select(ScoreRow.__table__.c.recent).where(
    ScoreRow.__table__.c.customer_id == bindparam("customer_id")
)


def add_activity(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        # Core, not the ORM bulk path: the rows are plain dicts and the ORM costs more than SQLite here.
        session.connection().execute(ACTIVITY.insert(), list(rows))


def histories(session: Session, customer_ids: Iterable[str]) -> dict[str, list[Activity]]:
    ids = list(set(customer_ids))
    out: dict[str, list[Activity]] = {c: [] for c in ids}
    # Core on the session's connection: the ORM layer costs more than the query on the hot path.
    connection = session.connection()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        if len(chunk) == 1:
            rows = connection.execute(_ACTIVITY_OF_ONE, {"customer_id": chunk[0]})
        else:
            rows = connection.execute(_ACTIVITY_OF_MANY, {"ids": chunk})
        for customer, time, kind, amount, value in rows:
            out[customer].append(
                Activity(time, kind, amount or 0.0, float("nan") if value is None else value)
            )
    return out


def latest_event_time(session: Session) -> float | None:
    table = MetaRow.__table__
    return session.connection().execute(select(table.c.value).where(table.c.key == AS_OF_KEY)).scalar()


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
        for row in session.scalars(
            select(ScoreRow).where(ScoreRow.customer_id.in_(ids[start : start + 500]))
        ):
            out[row.customer_id] = row
    return out


def score_states(session: Session, customer_ids: Iterable[str]) -> dict[str, tuple[str, list[float]]]:
    """Each scored customer's current band and recent probabilities."""
    ids = list(set(customer_ids))
    table = ScoreRow.__table__
    out: dict[str, tuple[str, list[float]]] = {}
    connection = session.connection()
    for start in range(0, len(ids), 500):
        rows = connection.execute(
            select(table.c.customer_id, table.c.band, table.c.recent).where(
                table.c.customer_id.in_(ids[start : start + 500])
            )
        )
        out.update({c: (band, list(recent or [])) for c, band, recent in rows})
    return out


def upsert_scores(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(SCORES)
    columns = [c for c in rows[0] if c != "customer_id"]
    session.connection().execute(
        statement.on_conflict_do_update(
            index_elements=["customer_id"], set_={c: getattr(statement.excluded, c) for c in columns}
        ),
        list(rows),
    )


def scored_customers(session: Session, after: str, limit: int) -> list[str]:
    """Scored customer ids in order, a page at a time (for rescoring sweeps)."""
    rows = session.connection().execute(
        select(SCORES.c.customer_id)
        .where(SCORES.c.customer_id > after)
        .order_by(SCORES.c.customer_id)
        .limit(limit)
    )
    return [r[0] for r in rows]


def delete_scores(session: Session, customer_ids: Iterable[str]) -> None:
    ids = list(customer_ids)
    if ids:
        session.execute(delete(ScoreRow).where(ScoreRow.customer_id.in_(ids)))


def recent_probabilities(session: Session, customer_id: str) -> list[float]:
    """The customer's latest stored scores, most recent first (empty when never scored)."""
    value = session.connection().execute(_RECENT_OF_ONE, {"customer_id": customer_id}).scalar()
    return list(value or [])


def any_clv(session: Session) -> bool:
    return session.connection().execute(select(TraitRow.__table__.c.customer_id).limit(1)).first() is not None


def at_risk(session: Session, min_probability: float, limit: int) -> list[ScoreRow]:
    """Ranked by value at risk (probability x value) where the value is known, then by probability."""
    at_stake = ScoreRow.probability * ScoreRow.value
    query = (
        select(ScoreRow)
        .where(ScoreRow.probability >= min_probability)
        .order_by(
            ScoreRow.value.is_(None), at_stake.desc(), ScoreRow.probability.desc(), ScoreRow.customer_id
        )
        .limit(limit)
    )
    return list(session.scalars(query))


def clv(session: Session, customer_ids: Iterable[str]) -> dict[str, float]:
    ids = list(set(customer_ids))
    table = TraitRow.__table__
    rows = session.connection().execute(
        select(table.c.customer_id, table.c.clv).where(table.c.customer_id.in_(ids))
    )
    return {c: v for c, v in rows if v is not None}


def set_clv(session: Session, customer_id: str, value: float) -> None:
    row = session.get(TraitRow, customer_id)
    if row is None:
        session.add(TraitRow(customer_id=customer_id, clv=value))
    else:
        row.clv = value


def segments(session: Session, customer_id: str) -> list[str]:
    table = SegmentRow.__table__
    rows = session.connection().execute(
        select(table.c.segment_id, table.c.segment_name).where(table.c.customer_id == customer_id)
    )
    return [name for pair in rows for name in pair]


def set_segment(session: Session, customer_id: str, segment_id: str, name: str, joined: bool) -> None:
    row = session.get(SegmentRow, (customer_id, segment_id))
    if joined and row is None:
        session.add(SegmentRow(customer_id=customer_id, segment_id=segment_id, segment_name=name))
    elif not joined and row is not None:
        session.delete(row)


def set_consent(
    session: Session, customer_id: str, purpose: str, granted: bool, time: float, event_id: str
) -> None:
    """Record a consent decision unless a later one (by event time) is already known."""
    row = session.get(ConsentRow, (customer_id, purpose))
    if row is None:
        session.add(ConsentRow(origin_customer_id=customer_id, purpose=purpose, customer_id=customer_id,
                               granted=granted, time=time, event_id=event_id))  # fmt: skip
    elif time >= row.time:
        row.granted, row.time, row.event_id = granted, time, event_id


def consent(session: Session, customer_id: str, purpose: str) -> tuple[bool, float] | None:
    """The customer's latest decision for the purpose (theirs or a merged profile's): (granted, time)."""
    row = session.execute(
        select(ConsentRow.granted, ConsentRow.time)
        .where(ConsentRow.customer_id == customer_id, ConsentRow.purpose == purpose)
        .order_by(ConsentRow.time.desc())
        .limit(1)
    ).first()
    return (bool(row.granted), float(row.time)) if row is not None else None


def erase_customer(session: Session, customer_id: str) -> None:
    """Forget the customer everywhere, including events that were merged into someone else."""
    for origin_table in (ActivityRow, ConsentRow):
        session.execute(
            delete(origin_table).where(
                or_(origin_table.customer_id == customer_id, origin_table.origin_customer_id == customer_id)
            )
        )
    for table in (ScoreRow, SegmentRow, TraitRow, ReactionRow, SupportSignalRow):
        session.execute(delete(table).where(table.customer_id == customer_id))


def merge_customers(session: Session, survivor_id: str, merged_id: str) -> None:
    for origin_table in (ActivityRow, ConsentRow):
        session.execute(
            update(origin_table).where(origin_table.customer_id == merged_id).values(customer_id=survivor_id)
        )
    session.execute(delete(ScoreRow).where(ScoreRow.customer_id == merged_id))
    for row in list(session.scalars(select(SegmentRow).where(SegmentRow.customer_id == merged_id))):
        set_segment(session, survivor_id, row.segment_id, row.segment_name, True)
        session.delete(row)
    session.execute(
        update(ReactionRow).where(ReactionRow.customer_id == merged_id).values(customer_id=survivor_id)
    )
    session.execute(
        update(SupportSignalRow)
        .where(SupportSignalRow.customer_id == merged_id)
        .values(customer_id=survivor_id)
    )


def unmerge_customers(session: Session, survivor_id: str, merged_id: str) -> None:
    for origin_table in (ActivityRow, ConsentRow):
        session.execute(
            update(origin_table)
            .where(origin_table.customer_id == survivor_id, origin_table.origin_customer_id == merged_id)
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
        select(ReactionRow.rule_id, ReactionRow.reaction, func.count()).group_by(
            ReactionRow.rule_id, ReactionRow.reaction
        )
    )
    out: dict[str, dict[str, int]] = {}
    for rule_id, reaction, count in rows:
        out.setdefault(rule_id, {"accepted": 0, "rejected": 0, "ignored": 0})[reaction] = int(count)
    return out


def add_support_signal(session: Session, event_id: str, customer_id: str, intent: str, time: float) -> None:
    if session.get(SupportSignalRow, event_id) is None:
        session.add(SupportSignalRow(event_id=event_id, customer_id=customer_id, intent=intent, time=time))


def support_signals(session: Session, customers: Iterable[str]) -> dict[str, list[SupportSignal]]:
    out: dict[str, list[SupportSignal]] = {}
    ids = list(customers)
    if not ids:
        return out
    for row in session.scalars(select(SupportSignalRow).where(SupportSignalRow.customer_id.in_(ids))):
        out.setdefault(row.customer_id, []).append(SupportSignal(row.intent, row.time))
    return out
