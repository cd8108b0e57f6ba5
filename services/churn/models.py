"""Tables of the churn service. Times of activity are float days since the Unix epoch (event time)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ActivityRow(Base):
    """One customer interaction (or sentiment score) as the features need it."""

    __tablename__ = "churn_activity"
    __table_args__ = (Index("ix_churn_activity_customer_time", "customer_id", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    # Who the event first belonged to, so a merge can be undone.
    origin_customer_id: Mapped[str] = mapped_column(String(200), index=True)
    event_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Float)
    amount: Mapped[float] = mapped_column(Float, default=0.0)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class ScoreRow(Base):
    """A customer's latest score (what /churn/at-risk ranks and band changes compare against)."""

    __tablename__ = "churn_scores"

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    probability: Mapped[float] = mapped_column(Float, index=True)
    raw_score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(10))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    value_source: Mapped[str | None] = mapped_column(String(20), nullable=True)
    sentiment: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[str] = mapped_column(String(100))
    as_of: Mapped[float] = mapped_column(Float)
    # The latest scores, most recent first (trend_window of them): what the trend compares against.
    recent: Mapped[list[float]] = mapped_column(JSON, default=list)
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SegmentRow(Base):
    __tablename__ = "churn_segments"

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    segment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    segment_name: Mapped[str] = mapped_column(String(200))


class TraitRow(Base):
    """Customer value when the profile service (or an identify event's traits) tells us."""

    __tablename__ = "churn_traits"

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    clv: Mapped[float | None] = mapped_column(Float, nullable=True)


class ConsentRow(Base):
    """A customer's latest consent decision per purpose (event time), kept per original customer id so a
    merge can be undone; a merged customer's decisions count for the survivor."""

    __tablename__ = "churn_consent"

    origin_customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(50), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    time: Mapped[float] = mapped_column(Float)
    event_id: Mapped[str] = mapped_column(String(200))


class MetaRow(Base):
    __tablename__ = "churn_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class RuleRow(Base):
    """A next-best-action rule: every set condition must hold; the highest priority match wins."""

    __tablename__ = "churn_action_rules"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    bands: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    min_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_sentiment: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_sentiment: Mapped[float | None] = mapped_column(Float, nullable=True)
    segment: Mapped[str | None] = mapped_column(String(200), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class ReactionRow(Base):
    __tablename__ = "churn_action_reactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    rule_id: Mapped[str] = mapped_column(String(100), index=True)
    action: Mapped[str] = mapped_column(String(100))
    reaction: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SupportSignalRow(Base):
    """A triaged support message (crm.support_triaged.v1): its intent and when, for the support reasons."""

    __tablename__ = "churn_support_signals"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    intent: Mapped[str] = mapped_column(String(100))
    time: Mapped[float] = mapped_column(Float)
