"""BG/NBD (Fader, Hardie & Lee 2005) with numpy/scipy: fit, P(alive), expected transactions.

Inputs per customer: ``x`` repeat transactions, ``t_x`` time of the last one and ``T`` age, both measured
from the first transaction, in weeks. The churn service uses P(alive) as a feature and as the baseline
churn score (1 - P(alive)), and expected transactions x average order value as its value estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BGNBDParams:
    r: float
    alpha: float
    a: float
    b: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood for ``params = (r, alpha, a, b)``."""
    from scipy.special import gammaln

    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    has_repeat = x > 0
    a4 = np.full_like(a3, -np.inf)
    xr = x[has_repeat]
    a4[has_repeat] = np.log(a) - np.log(b + xr - 1) - (r + xr) * np.log(alpha + t_x[has_repeat])
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4))


def fit(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, penalizer: float = 0.0) -> BGNBDParams:
    """Maximum likelihood on log-parameters (L-BFGS-B)."""
    from scipy.optimize import minimize

    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))

    def objective(log_params: np.ndarray) -> float:
        params = np.exp(log_params)
        value = -float(log_likelihood(params, x, t_x, T).mean())
        return value + penalizer * float(np.sum(params**2))

    best = None
    for start in (np.log([0.25, 4.0, 0.8, 2.5]), np.zeros(4)):
        result = minimize(objective, start, method="L-BFGS-B", bounds=[(-10, 10)] * 4)
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    r, alpha, a, b = np.exp(best.x)
    return BGNBDParams(float(r), float(alpha), float(a), float(b))


def p_alive(
    params: BGNBDParams, x: np.ndarray | float, t_x: np.ndarray | float, T: np.ndarray | float
) -> np.ndarray:
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return np.asarray(np.where(x > 0, 1.0 / (1.0 + odds), 1.0))


def p_alive_one(params: BGNBDParams, x: float, t_x: float, T: float) -> float:
    """P(alive) of one customer with plain floats (the online path scores customers one at a time)."""
    if x <= 0:
        return 1.0
    odds = params.a / (params.b + x - 1) * ((params.alpha + T) / (params.alpha + t_x)) ** (params.r + x)
    return float(1.0 / (1.0 + odds))


def expected_transactions(
    params: BGNBDParams, t: float, x: np.ndarray | float, t_x: np.ndarray | float, T: np.ndarray | float
) -> np.ndarray:
    """E[transactions in the next ``t`` weeks | history]."""
    from scipy.special import hyp2f1

    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if a <= 1.0:
        # The closed form needs a > 1; fall back to the customer's alive-weighted historical rate.
        rate = (x + r) / (alpha + T)
        return np.asarray(p_alive(params, x, t_x, T) * rate * t)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    first = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    with np.errstate(divide="ignore", invalid="ignore"):
        second = 1 + np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return np.asarray(np.nan_to_num(first / second, nan=0.0, posinf=0.0))
