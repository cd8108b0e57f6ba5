"""Gamma-Gamma (Fader, Hardie & Lee 2005b; Fader & Hardie 2013): the value of a customer's purchases.

Inputs per customer: ``x`` repeat purchases and ``m`` the mean value of those purchases. The model
assumes value and purchase frequency are independent; fit it on customers with repeat purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import gammaln

from shared.stats import FloatArray, Params, floats


@dataclass(frozen=True)
class GammaGamma(Params):
    """Fitted Gamma-Gamma: a customer's mean value ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float


def gamma_gamma_log_likelihood(params: GammaGamma, x: ArrayLike, m: ArrayLike) -> FloatArray:
    """Per-customer log-likelihood (customers with x > 0 and m > 0)."""
    x, m = floats(x, m)
    p, q, v = params.p, params.q, params.v
    return np.asarray(
        gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
        + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + v),
        dtype=np.float64,
    )  # fmt: skip


def fit_gamma_gamma(x: ArrayLike, m: ArrayLike) -> GammaGamma:
    """Fit on customers with repeat purchases (x > 0) and positive mean value."""
    x, m = floats(x, m)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if len(x) < 3:
        raise ValueError("Gamma-Gamma needs at least 3 customers with repeat purchases")
    scale = float(np.mean(m))

    def negative(log_params: FloatArray) -> float:
        p, q, v = np.exp(log_params)
        return -float(np.sum(gamma_gamma_log_likelihood(GammaGamma(p, q, v), x, m / scale)))

    result = minimize(negative, np.zeros(3), method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-8})
    p, q, v = np.exp(result.x)
    return GammaGamma(float(p), float(q), float(v * scale))


def expected_average_value(
    params: GammaGamma, x: ArrayLike, m: ArrayLike, population_mean: float
) -> FloatArray:
    """E[value per purchase | x, m]; customers without repeats get ``population_mean``."""
    x, m = floats(x, m)
    p, q, v = params.p, params.q, params.v
    with np.errstate(divide="ignore", invalid="ignore"):
        conditional = (v + m * x) * p / (p * x + q - 1)
    return np.asarray(np.where(x > 0, conditional, population_mean), dtype=np.float64)
