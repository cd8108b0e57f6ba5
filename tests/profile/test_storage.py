"""Migrations match the models on both databases; sentiment and churn signals land on the profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.profile.models import Base
from tests.profile.conftest import Store, event

T0 = datetime(2024, 2, 1, tzinfo=UTC)


def test_migrations_create_exactly_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        assert "profile_alembic_version" in tables
        ours = set(Base.metadata.tables)
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                # Other tables in the database (Alembic's version table, the bus ledger) are not ours.
                "include_name": lambda name, kind, _parent: kind != "table" or name in ours,
            },
        )
        assert compare_metadata(context, Base.metadata) == []


def test_sentiment_and_churn_signals_update_the_profile(store: Store, unique: str) -> None:
    cid = f"sig-{unique}"
    store.apply([event("review", {"customer": {"customer_id": cid}, "text": "meh", "stars": 2}, at=T0)])
    scores = [0.1, 0.1, 0.1, 0.9, 0.95, 0.95]
    store.signals(
        [
            event("sentiment_scored", {"customer_id": cid, "source_event_id": f"r{n}", "source_type": "review",
                  "label": "positive" if s > 0.5 else "negative", "score": s, "language": "en", "model_version": "v1"},
                  at=T0 + timedelta(hours=n))
            for n, s in enumerate(scores)
        ],
        "crm.sentiment.scored.v1",
    )  # fmt: skip
    store.signals(
        [event("churn_risk_changed", {"customer_id": cid, "probability": 0.81, "band": "high", "model_version": "c1",
               "reasons": ["no orders in 90 days"]})],
        "crm.churn.risk_changed.v1",
    )  # fmt: skip
    with store.factory() as session:
        view = store.service.full_view(session, store.service.active_row(session, cid))
    assert view.sentiment.count == 6
    assert view.sentiment.average == sum(scores) / 6
    assert view.sentiment.last_label == "positive"
    assert view.sentiment.trend == "improving", "recent scores are above the average"
    assert (view.churn.band, view.churn.model_version) == ("high", "c1")
    # Signals for unknown customers are ignored, not failed.
    assert store.signals(
        [event("churn_risk_changed", {"customer_id": f"ghost-{unique}", "probability": 0.1, "band": "low",
               "model_version": "c1"})],
        "crm.churn.risk_changed.v1",
    ) == []  # fmt: skip
