"""CLV (BG/NBD, Gamma-Gamma) against the published CDNOW figures, and the batch jobs on profiles."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from services.profile.batch import cluster_customers, fit_clv, name_clusters
from services.profile.clv import summarize
from services.profile.settings import get_settings
from shared.datasets import cdnow_transactions
from shared.replay import cdnow_customer_id, cdnow_events
from shared.stats.bgnbd import BgNbd, expected_purchases, fit_bgnbd, p_alive
from shared.stats.gamma_gamma import fit_gamma_gamma
from tests.profile.conftest import Store, event

CALIBRATION_END = date(1997, 9, 30)  # 39 weeks after 1997-01-01


def _sample_summary():  # type: ignore[no-untyped-def]
    return summarize(
        ((t.customer_id, t.day, t.amount) for t in cdnow_transactions(sample=True)), CALIBRATION_END
    )


def test_bgnbd_matches_fader_hardie_lee_2005() -> None:
    summary = _sample_summary()
    assert len(summary.customers) == 2357
    fitted = fit_bgnbd(summary.x, summary.t_x, summary.T)
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert getattr(fitted, name) == pytest.approx(value, rel=0.01), name


def test_gamma_gamma_matches_the_published_fit() -> None:
    summary = _sample_summary()
    fitted = fit_gamma_gamma(summary.x, summary.monetary)
    # Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value": p=6.25, q=3.74, gamma=15.44.
    assert (fitted.p, fitted.q, fitted.v) == pytest.approx((6.25, 3.74, 15.44), rel=0.01)


def test_conditional_expectation_of_the_paper() -> None:
    # Fader, Hardie & Lee (2005): a customer with x=2, t_x=30.43, T=38.86 makes 1.226 purchases in 39 weeks.
    params = BgNbd(0.243, 4.414, 0.793, 2.426)
    one = np.array([2.0]), np.array([30.43]), np.array([38.86])
    assert expected_purchases(params, 39, *one)[0] == pytest.approx(1.226, abs=0.002)
    assert 0 < p_alive(params, *one)[0] < 1
    assert p_alive(params, np.array([0.0]), np.array([0.0]), np.array([30.0]))[0] == 1.0


def test_cluster_names_are_words() -> None:
    centers = np.array(
        [[-1.0, 1.5, 1.5], [-0.5, 0.2, 0.1], [1.2, 0.5, 0.8], [0.8, -1.0, -1.0], [-1.0, -1.0, -0.8]]
    )
    assert name_clusters(centers) == ["champions", "loyal", "cannot lose them", "hibernating", "new"]


def test_batch_jobs_write_clv_and_clusters_on_profiles(store: Store) -> None:
    customers = sorted({t.customer_id for t in cdnow_transactions(sample=True)})[:400]
    # Replayed as the demo is: shifted to end now, the clock the fit scores against by default.
    events = [e.event for e in cdnow_events(sample=True, customers=customers, now=datetime.now(UTC))]
    for start in range(0, len(events), 500):
        store.apply(events[start : start + 500])
    with store.factory() as session:
        before = store.service.view(store.service.active_row(session, cdnow_customer_id(customers[0])))
    assert before.clv.p_alive is None
    assert str(before.clv.reason).startswith("not fitted yet")
    assert before.rfm.cluster is None
    assert str(before.rfm.reason).startswith("not clustered yet")
    clv = fit_clv(store.factory, horizon_days=90)
    assert clv.customers == len(customers)
    assert 0.05 < clv.bgnbd.r < 2
    assert abs(clv.as_of - datetime.now(UTC)) < timedelta(minutes=5)
    clusters = cluster_customers(store.factory, max_k=5)
    assert 2 <= clusters.k <= 5
    assert sum(clusters.names.values()) == len(customers)
    with store.factory() as session:
        views = [
            store.service.view(store.service.active_row(session, cdnow_customer_id(c))) for c in customers
        ]
    view = views[0]
    assert view.clv.model_version == clv.version
    assert 0 <= view.clv.p_alive <= 1
    assert view.clv.expected_purchases >= 0
    assert view.clv.expected_value >= 0
    assert view.rfm.cluster in clusters.names
    assert len(view.rfm.scores) == 3
    assert view.rfm.reason is None
    assert view.clv.reason is None
    # Scored as of now on data that ends now: some CDNOW buyers are still alive, as in a live shop.
    alive = sorted(v.clv.p_alive for v in views)
    assert alive[len(alive) // 2] > 0.05
    assert alive[-1] > 0.5


def test_a_customer_without_purchases_says_why_rfm_and_clv_are_empty(store: Store) -> None:
    store.apply(
        [event("rating", {"customer": {"customer_id": "only-ratings"}, "item_id": "m1", "rating": 4})]
    )
    with store.factory() as session:
        view = store.service.view(store.service.active_row(session, "only-ratings"))
    assert view.rfm.recency_days is None
    assert view.rfm.scores is None
    assert view.rfm.reason == "no purchases yet"
    assert view.clv.p_alive is None
    assert view.clv.reason == "no purchases yet"


def test_cli_fits_clv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.profile.cli import app

    monkeypatch.setenv("CRM_PROFILE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        store = Store(f"sqlite:///{tmp_path}/profile.db")
        customers = sorted({t.customer_id for t in cdnow_transactions(sample=True)})[:60]
        store.apply([e.event for e in cdnow_events(sample=True, customers=customers, now=datetime.now(UTC))])
        store.engine.dispose()
        result = CliRunner().invoke(app, ["fit-clv", "--horizon-days", "30"])
        assert result.exit_code == 0, result.output
        assert "BG/NBD r=" in result.output
        result = CliRunner().invoke(app, ["cluster", "--max-k", "3"])
        assert result.exit_code == 0, result.output
        assert "silhouette=" in result.output
    finally:
        get_settings.cache_clear()
