"""The recsys service's own tables: interactions (its training data and live histories) and reactions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData()


class InteractionRow(Base):
    """One customer-item interaction (rating, view, cart, purchase line)."""

    __tablename__ = "recsys_interactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    # The customer the event named before any merge, so that undoing a merge can move rows back.
    origin_customer_id: Mapped[str] = mapped_column(String(200))
    item_id: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ItemRow(Base):
    """The catalog: an item's name, categories and attributes, from its newest ``crm.item_updated.v1``."""

    __tablename__ = "recsys_items"

    item_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Epoch seconds of the event that wrote the row: an older event arriving late changes nothing.
    event_time: Mapped[float] = mapped_column(Float)
    event_id: Mapped[str] = mapped_column(String(200))


class ReactionRow(Base):
    """An impression, click or dismissal of a recommended item, tagged with the model version."""

    __tablename__ = "recsys_reactions"
    __table_args__ = (Index("ix_recsys_reactions_version", "model_version", "reaction"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    item_id: Mapped[str] = mapped_column(String(200))
    reaction: Mapped[str] = mapped_column(String(20))
    model_version: Mapped[str] = mapped_column(String(200))
    recommendation_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
