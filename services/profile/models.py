"""SQLAlchemy tables of the profile service. The schema is created and upgraded by the Alembic
migrations in ``migrations/`` (run at start-up), never by ``create_all``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Autoincrement that is 64-bit on PostgreSQL and the rowid alias on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Customer(Base):
    """One customer profile with its incrementally kept aggregates."""

    __tablename__ = "profile_customers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | merged
    merged_into: Mapped[str | None] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_seen: Mapped[datetime | None] = mapped_column(index=True)
    last_seen: Mapped[datetime | None] = mapped_column(index=True)
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    email_enc: Mapped[str | None] = mapped_column(Text)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    event_count: Mapped[int] = mapped_column(default=0)
    counts_by_type: Mapped[dict[str, Any]] = mapped_column(default=dict)
    counts_by_channel: Mapped[dict[str, Any]] = mapped_column(default=dict)
    orders: Mapped[int] = mapped_column(default=0, index=True)
    revenue: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    first_order_at: Mapped[datetime | None]
    last_order_at: Mapped[datetime | None]
    purchase_days: Mapped[int] = mapped_column(default=0)
    rating_count: Mapped[int] = mapped_column(default=0)
    rating_sum: Mapped[float] = mapped_column(Float, default=0.0)
    sentiment_count: Mapped[int] = mapped_column(default=0)
    sentiment_sum: Mapped[float] = mapped_column(Float, default=0.0)
    sentiment_recent: Mapped[float | None] = mapped_column(Float)
    sentiment_last_label: Mapped[str | None] = mapped_column(String(16))
    churn_probability: Mapped[float | None] = mapped_column(Float)
    churn_band: Mapped[str | None] = mapped_column(String(16), index=True)
    churn_model_version: Mapped[str | None] = mapped_column(String(200))
    consent: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rfm_cluster: Mapped[str | None] = mapped_column(String(64), index=True)
    rfm_scores: Mapped[str | None] = mapped_column(String(8))
    clv_p_alive: Mapped[float | None] = mapped_column(Float)
    clv_expected_purchases: Mapped[float | None] = mapped_column(Float)
    clv_expected_value: Mapped[float | None] = mapped_column(Float)
    clv_horizon_days: Mapped[int | None]
    clv_model_version: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=1)


class Identifier(Base):
    """An identifier of a customer, stored only as its keyed hash."""

    __tablename__ = "profile_identifiers"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(
        String(220)
    )  # customer_id | anonymous_id | email | phone | ext:<system>
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    value_enc: Mapped[str | None] = mapped_column(Text)  # encrypted value, for export only
    created_at: Mapped[datetime]


class TimelineEntry(Base):
    """One interaction in a customer's timeline (the event's data without the identifiers)."""

    __tablename__ = "profile_timeline"
    __table_args__ = (Index("ix_profile_timeline_customer_time", "customer_id", "occurred_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Merge(Base):
    """A merge of two profiles with what is needed to undo it exactly."""

    __tablename__ = "profile_merges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(String(200), index=True)
    merged_id: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), default="applied")  # applied | undone
    reason: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime]
    undone_at: Mapped[datetime | None]
    snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Segment(Base):
    """A rule segment: a JSON condition over profile fields."""

    __tablename__ = "profile_segments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SegmentMember(Base):
    __tablename__ = "profile_segment_members"

    segment_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("profile_segments.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    joined_at: Mapped[datetime]


class ErasureReceipt(Base):
    """Proof that an erasure happened; holds no personal data (only a keyed hash of the id)."""

    __tablename__ = "profile_erasure_receipts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_hash: Mapped[str] = mapped_column(String(64), unique=True)
    requested_at: Mapped[datetime]
    completed_at: Mapped[datetime]
    deleted: Mapped[dict[str, Any]] = mapped_column(default=dict)


class BatchRun(Base):
    """A run of a batch job (CLV fit, RFM clustering) and the parameters it produced."""

    __tablename__ = "profile_batch_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)  # clv | rfm_clusters
    fitted_at: Mapped[datetime]
    customers: Mapped[int]
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)


# Typed handles on the tables for Core statements on the hot paths.
customers_table = cast(Table, Customer.__table__)
identifiers_table = cast(Table, Identifier.__table__)
timeline_table = cast(Table, TimelineEntry.__table__)
segment_members_table = cast(Table, SegmentMember.__table__)
