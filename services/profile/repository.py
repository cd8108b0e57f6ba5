"""All SQL of the profile service. Hot paths read and write whole batches with one statement each."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    CursorResult,
    Float,
    Integer,
    Result,
    Select,
    String,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from services.profile.models import (
    BatchRun,
    Customer,
    ErasureReceipt,
    Identifier,
    Merge,
    Segment,
    SegmentMember,
    TimelineEntry,
    UTCDateTime,
    customers_table,
    identifiers_table,
    segment_members_table,
    timeline_table,
)

CUSTOMER_COLUMNS = tuple(c.name for c in customers_table.columns)
CHUNK = 500


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def _locks(session: Session) -> bool:
    # SQLite serialises writers anyway; on PostgreSQL concurrent writers (API and consumer) must lock rows.
    return session.get_bind().dialect.name == "postgresql"


def _on_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


# --- customers on SQLite, through the driver ----------------------------------------------------
# The consumer loads, inserts and updates the customer rows of every batch. On SQLite those statements
# go straight to the driver with values converted exactly as the columns' types do (UTCDateTime: naive
# UTC text with microseconds, as SQLAlchemy's SQLite DateTime writes and parses it; JSON: json.dumps
# text; numbers and strings as they are): SQLAlchemy's per-value bind and result processing was the
# largest share of the consumer's CPU per event.

_DATETIME = frozenset(c.name for c in customers_table.columns if isinstance(c.type, UTCDateTime))
_JSON = frozenset(c.name for c in customers_table.columns if isinstance(c.type, JSON))
_PLAIN = frozenset(c.name for c in customers_table.columns if isinstance(c.type, String | Integer | Float))
# A column of any other type (it would need its own conversion) sends every statement through SQLAlchemy.
_COLUMN_SET = frozenset(CUSTOMER_COLUMNS)
_DRIVER_PATH = _DATETIME | _JSON | _PLAIN == _COLUMN_SET
_SELECT_CUSTOMERS = f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM profile_customers WHERE id IN "
_DATETIME_AT = tuple(i for i, name in enumerate(CUSTOMER_COLUMNS) if name in _DATETIME)
_JSON_AT = tuple(i for i, name in enumerate(CUSTOMER_COLUMNS) if name in _JSON)
_ID_AT = CUSTOMER_COLUMNS.index("id")


def _sqlite_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.isoformat(" ", "microseconds")
    if len(text) == 26:  # naive: UTC already (as UTCDateTime reads it)
        return text
    if text.endswith("+00:00"):
        return text[:26]
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_values(columns: Sequence[str], row: dict[str, Any], stamps: dict[int, str | None]) -> list[Any]:
    """``stamps``: the text of each datetime object already converted for this statement (by id: the
    rows hold the objects while it is built). A batch writes the same clock reading into every row."""
    values = []
    for name in columns:
        value = row[name]
        if name in _DATETIME:
            if value is not None:
                key = id(value)
                if key not in stamps:
                    stamps[key] = _sqlite_datetime(value)
                value = stamps[key]
        elif name in _JSON:
            value = "{}" if value == {} else json.dumps(value)
        values.append(value)
    return values


def _sqlite_load_customers(session: Session, wanted: list[str]) -> dict[str, dict[str, Any]]:
    connection = session.connection()
    found: dict[str, dict[str, Any]] = {}
    parse_datetime, loads = datetime.fromisoformat, json.loads
    for chunk in _chunks(wanted):
        sql = _SELECT_CUSTOMERS + f"({', '.join(['?'] * len(chunk))})"
        for record in connection.exec_driver_sql(sql, tuple(chunk)):
            values = list(record)
            for i in _DATETIME_AT:
                if values[i] is not None:
                    values[i] = parse_datetime(values[i]).replace(tzinfo=UTC)
            for i in _JSON_AT:
                if values[i] is not None:
                    values[i] = loads(values[i])
            found[values[_ID_AT]] = dict(zip(CUSTOMER_COLUMNS, values, strict=True))
    return found


def _sqlite_insert_customers(session: Session, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    sql = f"INSERT INTO profile_customers ({', '.join(columns)}) VALUES ({', '.join(['?'] * len(columns))})"
    stamps: dict[int, str | None] = {}
    session.connection().exec_driver_sql(sql, [tuple(_sqlite_values(columns, r, stamps)) for r in rows])


def _sqlite_update_customers(session: Session, groups: dict[tuple[str, ...], list[dict[str, Any]]]) -> None:
    connection = session.connection()
    for columns, group in groups.items():
        sql = f"UPDATE profile_customers SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?"
        stamps: dict[int, str | None] = {}
        connection.exec_driver_sql(sql, [(*_sqlite_values(columns, r, stamps), r["id"]) for r in group])


# --- customers ---------------------------------------------------------------------------------


def load_customers(session: Session, ids: Iterable[str], *, lock: bool = True) -> dict[str, dict[str, Any]]:
    """Customer rows as plain dicts, keyed by id, in one query per 500 ids."""
    wanted = sorted(set(ids))
    if _DRIVER_PATH and _on_sqlite(session):
        return _sqlite_load_customers(session, wanted)
    table = customers_table
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(wanted):
        query = select(table).where(table.c.id.in_(chunk))
        if lock and _locks(session):
            query = query.with_for_update()
        for row in session.execute(query).mappings():
            found[row["id"]] = dict(row)
    return found


def insert_customers(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if _DRIVER_PATH and _on_sqlite(session):
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            by_columns.setdefault(tuple(row), []).append(row)
        for columns, group in by_columns.items():
            # Whole rows only: a missing column takes the model's default, which SQLAlchemy applies.
            if len(columns) == len(CUSTOMER_COLUMNS) and _COLUMN_SET.issuperset(columns):
                _sqlite_insert_customers(session, columns, group)
            else:
                session.execute(insert(customers_table), group)
        return
    session.execute(insert(customers_table), rows)


def update_customers(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk UPDATE by primary key: one executemany per set of columns."""
    table = customers_table
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(sorted(k for k in row if k != "id")), []).append(row)
    if _DRIVER_PATH and _on_sqlite(session) and all(map(_COLUMN_SET.issuperset, by_columns)):
        _sqlite_update_customers(session, by_columns)
        return
    for columns, group in by_columns.items():
        statement = (
            update(table).where(table.c.id == bindparam("key_id")).values({c: bindparam(c) for c in columns})
        )
        session.execute(statement, [{**{c: r[c] for c in columns}, "key_id": r["id"]} for r in group])


def delete_customers(session: Session, ids: Sequence[str]) -> int:
    return _rowcount(session.execute(delete(Customer).where(Customer.id.in_(ids))))


def customers_merged_into(session: Session, survivor_id: str) -> list[str]:
    return list(session.scalars(select(Customer.id).where(Customer.merged_into == survivor_id)))


def search_customers(
    session: Session, filters: list[Any], order_by: Any, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    table = customers_table
    base: Select[Any] = select(table).where(table.c.status == "active", *filters)
    total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    rows = session.execute(base.order_by(order_by, table.c.id).limit(limit).offset(offset)).mappings()
    return [dict(r) for r in rows], int(total)


def all_active_customers(session: Session) -> list[dict[str, Any]]:
    table = customers_table
    return [dict(r) for r in session.execute(select(table).where(table.c.status == "active")).mappings()]


# --- identifiers -------------------------------------------------------------------------------


def identifier_owners(session: Session, hashes: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(hashes))
    owners: dict[str, str] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(Identifier.hash, Identifier.customer_id).where(Identifier.hash.in_(chunk))
        )
        owners.update(dict(rows.all()))
    return owners


def insert_identifiers(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(identifiers_table), rows)


def identifiers_of(session: Session, customer_id: str) -> list[Identifier]:
    return list(session.scalars(select(Identifier).where(Identifier.customer_id == customer_id)))


def move_identifiers(session: Session, hashes: Sequence[str], to_customer: str) -> None:
    for chunk in _chunks(hashes):
        session.execute(update(Identifier).where(Identifier.hash.in_(chunk)).values(customer_id=to_customer))


def delete_identifiers(session: Session, customer_ids: Sequence[str]) -> int:
    return _rowcount(session.execute(delete(Identifier).where(Identifier.customer_id.in_(customer_ids))))


# --- timeline ----------------------------------------------------------------------------------


_TIMELINE_SQLITE = (
    "INSERT INTO profile_timeline (customer_id, event_id, type, channel, occurred_at, details) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


_TIMELINE_POSTGRES = (
    "INSERT INTO profile_timeline (customer_id, event_id, type, channel, occurred_at, details) "
    "VALUES (%s, %s, %s, %s, %s, %s::json)"
)


def insert_timeline(session: Session, rows: list[dict[str, Any]]) -> None:
    """Rows carry ``details`` as JSON text. The hottest write (one row per event). On SQLite it goes straight to the driver's executemany,
    in the exact format SQLAlchemy's DateTime and JSON types use, which costs a third less."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.connection().exec_driver_sql(
            _TIMELINE_POSTGRES,
            [
                (r["customer_id"], r["event_id"], r["type"], r["channel"], r["occurred_at"], r["details"])
                for r in rows
            ],
        )
        return
    if dialect != "sqlite":
        session.execute(insert(timeline_table), [{**r, "details": json.loads(r["details"])} for r in rows])
        return
    params = [
        (
            r["customer_id"], r["event_id"], r["type"], r["channel"],
            _sqlite_datetime(r["occurred_at"]), r["details"],
        )
        for r in rows
    ]  # fmt: skip
    session.connection().exec_driver_sql(_TIMELINE_SQLITE, params)


def timeline_page(
    session: Session,
    customer_id: str,
    limit: int,
    before: tuple[datetime, int] | None,
    types: list[str] | None,
) -> list[TimelineEntry]:
    """Newest first; keyset paging on (occurred_at, id) so pages stay stable while events arrive."""
    query = select(TimelineEntry).where(TimelineEntry.customer_id == customer_id)
    if types:
        query = query.where(TimelineEntry.type.in_(types))
    if before is not None:
        at, row_id = before
        query = query.where(
            or_(
                TimelineEntry.occurred_at < at,
                (TimelineEntry.occurred_at == at) & (TimelineEntry.id < row_id),
            )
        )
    query = query.order_by(TimelineEntry.occurred_at.desc(), TimelineEntry.id.desc()).limit(limit)
    return list(session.scalars(query))


def timeline_event_ids(session: Session, customer_id: str) -> list[str]:
    return list(
        session.scalars(select(TimelineEntry.event_id).where(TimelineEntry.customer_id == customer_id))
    )


def timeline_count(session: Session, customer_id: str) -> int:
    query = select(func.count()).select_from(TimelineEntry).where(TimelineEntry.customer_id == customer_id)
    return int(session.execute(query).scalar_one())


def move_timeline(
    session: Session, from_customer: str, to_customer: str, event_ids: Sequence[str] | None
) -> None:
    if event_ids is None:
        session.execute(
            update(TimelineEntry)
            .where(TimelineEntry.customer_id == from_customer)
            .values(customer_id=to_customer)
        )
        return
    for chunk in _chunks(event_ids):
        session.execute(
            update(TimelineEntry)
            .where(TimelineEntry.customer_id == from_customer, TimelineEntry.event_id.in_(chunk))
            .values(customer_id=to_customer)
        )


def delete_timeline(session: Session, customer_ids: Sequence[str]) -> int:
    return _rowcount(
        session.execute(delete(TimelineEntry).where(TimelineEntry.customer_id.in_(customer_ids)))
    )


# --- segments ----------------------------------------------------------------------------------


def list_segments(session: Session) -> list[Segment]:
    return list(session.scalars(select(Segment).order_by(Segment.created_at, Segment.id)))


def get_segment(session: Session, segment_id: str) -> Segment | None:
    return session.get(Segment, segment_id)


def segment_by_name(session: Session, name: str) -> Segment | None:
    return session.scalars(select(Segment).where(Segment.name == name)).first()


def memberships(session: Session, customer_ids: Iterable[str]) -> dict[str, set[str]]:
    """Segment ids per customer id."""
    wanted = sorted(set(customer_ids))
    found: dict[str, set[str]] = {c: set() for c in wanted}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(SegmentMember.customer_id, SegmentMember.segment_id).where(
                SegmentMember.customer_id.in_(chunk)
            )
        )
        for customer_id, segment_id in rows:
            found[customer_id].add(segment_id)
    return found


def segment_member_ids(session: Session, segment_id: str) -> set[str]:
    return set(
        session.scalars(select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment_id))
    )


def member_ids_query(segment_id: str) -> Select[Any]:
    return select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment_id)


def add_members(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(segment_members_table), rows)


def remove_members(session: Session, pairs: list[tuple[str, str]]) -> None:
    for segment_id, customer_id in pairs:
        session.execute(
            delete(SegmentMember).where(
                SegmentMember.segment_id == segment_id, SegmentMember.customer_id == customer_id
            )
        )


def delete_memberships(session: Session, customer_ids: Sequence[str]) -> int:
    query = delete(SegmentMember).where(SegmentMember.customer_id.in_(customer_ids))
    return _rowcount(session.execute(query))


def members_page(
    session: Session, segment_id: str, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    table = customers_table
    base = (
        select(table)
        .join(SegmentMember, SegmentMember.customer_id == table.c.id)
        .where(SegmentMember.segment_id == segment_id)
    )
    total = session.execute(
        select(func.count()).select_from(SegmentMember).where(SegmentMember.segment_id == segment_id)
    ).scalar_one()
    rows = session.execute(base.order_by(table.c.id).limit(limit).offset(offset)).mappings()
    return [dict(r) for r in rows], int(total)


def member_consents(session: Session, segment_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(customer id, consent) of every member, by id: what a marketing export filters on."""
    table = customers_table
    rows = session.execute(
        select(table.c.id, table.c.consent)
        .join(SegmentMember, SegmentMember.customer_id == table.c.id)
        .where(SegmentMember.segment_id == segment_id)
        .order_by(table.c.id)
    )
    return [(str(customer_id), consent or {}) for customer_id, consent in rows]


# --- merges, erasure, batch runs ---------------------------------------------------------------


def get_merge(session: Session, merge_id: str) -> Merge | None:
    return session.get(Merge, merge_id)


def merges_involving(session: Session, customer_ids: Sequence[str]) -> list[Merge]:
    query = select(Merge).where(or_(Merge.survivor_id.in_(customer_ids), Merge.merged_id.in_(customer_ids)))
    return list(session.scalars(query))


def receipt_by_subject(session: Session, subject_hash: str) -> ErasureReceipt | None:
    return session.scalars(select(ErasureReceipt).where(ErasureReceipt.subject_hash == subject_hash)).first()


def latest_run(session: Session, kind: str) -> BatchRun | None:
    query = select(BatchRun).where(BatchRun.kind == kind).order_by(BatchRun.fitted_at.desc()).limit(1)
    return session.scalars(query).first()
