"""The model's explanations are exact, its files round-trip, and BG/NBD matches the published fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from services.churn.ml.features import Activity, Kind, cdnow_histories, customer_features, fit_bgnbd, to_days
from services.churn.ml.model import ChurnModel
from services.churn.ml.table import engineer, read_table, spec_for, telco_files
from services.churn.ml.training import fit_linear, fit_model
from shared.datasets import package_file
from shared.stats import bgnbd


def test_events_reasons_and_base_value_sum_to_the_raw_score(events_model: ChurnModel) -> None:
    histories = cdnow_histories(max_customers=300, seed=11)
    as_of = max(a.time for h in histories.values() for a in h)
    params = bgnbd.BgNbd(**events_model.extra["bgnbd"])
    rows = [f for h in histories.values() if (f := customer_features(h, as_of, params)) is not None]
    X = events_model.matrix(rows)
    contrib, base = events_model.contributions(X)
    raw = events_model.raw_score(X)
    np.testing.assert_allclose(base + contrib.sum(axis=1), raw, atol=1e-9)
    # And the listed top reasons plus what they leave out add up too.
    top = events_model.top_reasons(contrib, rows, 5)
    assert all(1 <= len(r) <= 5 for r in top)
    listed = np.array([sum(x.weight for x in r) for r in top])
    np.testing.assert_allclose(base + listed + (contrib.sum(axis=1) - listed), raw, atol=1e-9)
    assert all(abs(r[0].weight) >= abs(r[-1].weight) for r in top)


def test_blended_table_model_contributions_are_exact_and_survive_save_and_load(tmp_path: Path) -> None:
    train_path, _ = telco_files()
    frame, y = read_table(train_path, "churn")
    features = engineer(frame.head(1500))
    spec = spec_for(features, "customerid")
    X = spec.frame_matrix(features)
    fit = fit_model(X, y[:1500], spec, kind="table", tune=False, max_rounds=300, learning_rate=0.1)
    model = fit.model
    # Force the GBT + LR blend so the linear part's contributions are checked as well.
    model.linear, model.gbt_weight = fit_linear(X, y[:1500], spec), 0.6
    contrib, base = model.contributions(X[:200])
    np.testing.assert_allclose(base + contrib.sum(axis=1), model.raw_score(X[:200]), atol=1e-9)
    reasons = model.top_reasons(contrib, features.head(200).to_dict(orient="records"), 3)
    assert any(r.feature == "contract" and r.text.startswith("contract: ") for rs in reasons for r in rs)
    model.save(tmp_path / "m")
    again = ChurnModel.load(tmp_path / "m")
    np.testing.assert_allclose(again.probability(X[:200]), model.probability(X[:200]), atol=1e-12)
    assert again.gbt_weight == pytest.approx(0.6)


def test_bgnbd_fit_on_the_cdnow_sample_matches_the_published_parameters() -> None:
    histories = cdnow_histories(package_file("lifetimes", "datasets", "CDNOW_sample.txt"))
    calibration_end = to_days(__import__("datetime").datetime(1997, 10, 1, tzinfo=__import__("datetime").UTC))
    params = fit_bgnbd(histories.values(), calibration_end)
    # Fader, Hardie & Lee (2005): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426 (39-week calibration).
    assert params.r == pytest.approx(0.243, rel=0.1)
    assert params.alpha == pytest.approx(4.414, rel=0.1)
    assert params.a == pytest.approx(0.793, rel=0.15)
    assert params.b == pytest.approx(2.426, rel=0.15)
    assert float(bgnbd.p_alive(params, 0, 0, 30)) == 1.0  # BG/NBD: no repeat purchase, never "dead"
    assert 0 < float(bgnbd.p_alive(params, 3, 5, 30)) < 1


def test_features_never_see_events_after_the_cutoff() -> None:
    day = to_days(__import__("datetime").datetime(1998, 1, 1, tzinfo=__import__("datetime").UTC))
    history = [Activity(day, Kind.PURCHASE, 10.0), Activity(day + 50, Kind.PURCHASE, 99.0)]
    before = customer_features(history, day + 10)
    assert before is not None
    assert before["n_purchases"] == 1
    assert before["monetary_total"] == 10.0
    assert before["recency_days"] == pytest.approx(10.0)
    assert customer_features(history, day - 1) is None
    assert math.isnan(before["rating_mean"])
