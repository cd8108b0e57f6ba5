"""shared.stats (BG/NBD, Gamma-Gamma) gives both services exactly the numbers they had before it was shared.

The figures below were computed on the real CDNOW sample by the two implementations the services kept
before (``services/profile/clv.py`` and ``services/churn/bgnbd.py``, commit 2537007); the shared code must
reproduce them, the profile's CLV through the "polished" solver and churn's features through
"multistart".
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from services.churn.ml import bgnbd as churn_bgnbd
from services.churn.ml.features import cdnow_histories, customer_features, fit_bgnbd, to_days
from services.profile.clv import summarize
from shared.datasets import cdnow_transactions, package_file
from shared.stats.bgnbd import BgNbd, expected_purchases, p_alive, p_alive_one
from shared.stats.bgnbd import fit_bgnbd as fit_shared
from shared.stats.gamma_gamma import expected_average_value, fit_gamma_gamma

SAME = 1e-9  # relative: what the old code gave, up to the last digits of a sum over 2,357 customers


def test_the_profiles_clv_numbers_are_unchanged() -> None:
    s = summarize(
        ((t.customer_id, t.day, t.amount) for t in cdnow_transactions(sample=True)), date(1997, 9, 30)
    )
    params = fit_shared(s.x, s.t_x, s.T, solver="polished")
    assert params.as_dict() == pytest.approx(
        {"r": 0.2425945217309732, "alpha": 4.41360209892325, "a": 0.7929220886184655, "b": 2.425907082019197},
        rel=SAME,
    )
    gg = fit_gamma_gamma(s.x, s.monetary)
    assert (gg.p, gg.q, gg.v) == pytest.approx(
        (6.24957244019622, 3.7442246527800034, 15.443520604368256), rel=SAME
    )
    assert float(p_alive(params, s.x, s.t_x, s.T).sum()) == pytest.approx(1917.2776737572299, rel=SAME)
    assert float(expected_purchases(params, 13, s.x, s.t_x, s.T).sum()) == pytest.approx(
        628.0224326000305, rel=SAME
    )
    value = expected_average_value(gg, s.x, s.monetary, float(np.mean(s.monetary)))
    assert float(value.sum()) == pytest.approx(53329.348042917525, rel=SAME)


def test_the_churn_services_bgnbd_numbers_are_unchanged() -> None:
    histories = cdnow_histories(package_file("lifetimes", "datasets", "CDNOW_sample.txt"))
    end = to_days(datetime(1997, 10, 1, tzinfo=UTC))
    params = fit_bgnbd(histories.values(), end)
    assert params.as_dict() == pytest.approx(
        {
            "r": 0.24174026718905817,
            "alpha": 4.393823928036409,
            "a": 0.8145162770458483,
            "b": 2.4772840066679773,
        },
        rel=SAME,
    )
    rows = [f for h in histories.values() if (f := customer_features(h, end, params)) is not None]
    assert sum(r["p_alive"] for r in rows) == pytest.approx(1913.5500633156867, rel=SAME)
    x = np.array([r["active_days"] - 1 for r in rows])
    age = np.array([r["tenure_days"] for r in rows]) / 7.0
    t_x = np.maximum(age - np.array([r["recency_days"] for r in rows]) / 7.0, 0.0)
    assert float(p_alive(params, x, t_x, age).sum()) == pytest.approx(1914.4121533410498, rel=SAME)
    expected = churn_bgnbd.expected_transactions(params, 52.0, x, t_x, age)
    assert float(expected.sum()) == pytest.approx(2710.5630020289063, rel=SAME)


def test_both_solvers_find_the_same_optimum_and_one_customer_scores_as_many() -> None:
    s = summarize(
        ((t.customer_id, t.day, t.amount) for t in cdnow_transactions(sample=True)), date(1997, 9, 30)
    )
    polished = fit_shared(s.x, s.t_x, s.T, solver="polished").as_dict()
    multistart = fit_shared(s.x, s.t_x, s.T, solver="multistart").as_dict()
    assert multistart == pytest.approx(polished, rel=1e-4)
    params = BgNbd(**polished)
    many = p_alive(params, s.x[:50], s.t_x[:50], s.T[:50])
    one = [
        p_alive_one(params, float(x), float(t), float(T))
        for x, t, T in zip(s.x[:50], s.t_x[:50], s.T[:50], strict=True)
    ]
    np.testing.assert_allclose(many, one, rtol=1e-12)
