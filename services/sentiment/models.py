"""SQLAlchemy tables of the sentiment service. Scores only: texts are never stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SentimentScore(Base):
    """One scored review or support message, keyed by the event it came from."""

    __tablename__ = "sentiment_scores"

    source_event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    # The customer the event named before any merge, so an undone merge can give it back.
    original_customer_id: Mapped[str] = mapped_column(String(200))
    source_type: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    language: Mapped[str] = mapped_column(String(8))
    model_version: Mapped[str] = mapped_column(String(200))
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_sentiment_scores_customer", "customer_id", "scored_at"),
        Index("ix_sentiment_scores_original", "original_customer_id"),
    )
