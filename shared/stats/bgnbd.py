"""BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): fit, P(alive), expected
purchases.

Inputs per customer: ``x`` repeat purchases, ``t_x`` time of the last one and ``T`` age, both measured
from the first purchase, in any one time unit (the services use weeks); ``alpha`` is in that unit.
Maximum likelihood on log-parameters; closed forms for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from shared.stats import FloatArray, Params, floats

Solver = Literal["polished", "multistart"]
"""How :func:`fit_bgnbd` maximises the likelihood:

- ``polished``: Nelder-Mead on a unit time scale, then an L-BFGS-B polish (the profile's CLV fit; it
  reproduces the published CDNOW parameters to 0.1 %).
- ``multistart``: bounded L-BFGS-B on the mean log-likelihood from two starts (the churn service, which
  refits at every training cutoff; about five times quicker, the same optimum to 1e-4).
"""


@dataclass(frozen=True)
class BgNbd(Params):
    """Fitted BG/NBD: purchase rates Gamma(r, alpha); drop-out probability Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


def _dropout_odds(params: BgNbd, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """P(dropped out) / P(alive) given the history; 0 without repeat purchases (never seen to drop out)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    odds = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return np.asarray(odds, dtype=np.float64)


def bgnbd_log_likelihood(params: BgNbd, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """Per-customer log-likelihood."""
    x, t_x, T = floats(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf
        )
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4), dtype=np.float64)


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, solver: Solver = "polished") -> BgNbd:
    """Maximum-likelihood BG/NBD parameters (see :data:`Solver`)."""
    x, t_x, T = floats(x, t_x, T)
    return _fit_polished(x, t_x, T) if solver == "polished" else _fit_multistart(x, t_x, T)


def _fit_polished(x: FloatArray, t_x: FloatArray, T: FloatArray) -> BgNbd:
    scale = max(float(np.max(T)), 1e-9)  # fit on a unit time scale for conditioning, then rescale alpha

    def negative(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        return -float(np.sum(bgnbd_log_likelihood(BgNbd(r, alpha, a, b), x, t_x / scale, T / scale)))

    start = np.log(np.array([1.0, 1.0, 1.0, 1.0]))
    first = minimize(
        negative, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-10}
    )
    best = minimize(negative, first.x, method="L-BFGS-B")
    solution = best.x if best.fun <= first.fun else first.x
    r, alpha, a, b = np.exp(solution)
    return BgNbd(float(r), float(alpha * scale), float(a), float(b))


def _fit_multistart(x: FloatArray, t_x: FloatArray, T: FloatArray) -> BgNbd:
    def negative(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        return -float(bgnbd_log_likelihood(BgNbd(r, alpha, a, b), x, t_x, T).mean())

    best = None
    for start in (np.log([0.25, 4.0, 0.8, 2.5]), np.zeros(4)):
        result = minimize(negative, start, method="L-BFGS-B", bounds=[(-10, 10)] * 4)
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    r, alpha, a, b = np.exp(best.x)
    return BgNbd(float(r), float(alpha), float(a), float(b))


def p_alive(params: BgNbd, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(still a customer | history); 1 for customers without repeat purchases."""
    x, t_x, T = floats(x, t_x, T)
    return np.asarray(1.0 / (1.0 + _dropout_odds(params, x, t_x, T)), dtype=np.float64)


def p_alive_one(params: BgNbd, x: float, t_x: float, T: float) -> float:
    """:func:`p_alive` of one customer with plain floats (online scoring goes one customer at a time)."""
    if x <= 0:
        return 1.0
    odds = params.a / (params.b + x - 1) * ((params.alpha + T) / (params.alpha + t_x)) ** (params.r + x)
    return float(1.0 / (1.0 + odds))


def expected_purchases(params: BgNbd, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """E[purchases in the next ``t`` time units | history] (the paper's equation 10). Where it is not
    finite (a = 1, overflow) it reads 0."""
    x, t_x, T = floats(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        expected = numerator / (1 + _dropout_odds(params, x, t_x, T))
    return np.asarray(np.nan_to_num(expected, nan=0.0, posinf=0.0), dtype=np.float64)
