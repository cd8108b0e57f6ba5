"""Customer lifetime value: BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader, Hardie & Lee 2005b),
implemented with numpy/scipy. Maximum likelihood on log-parameters; closed forms for P(alive),
expected purchases in the next ``t`` periods and expected average order value."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class RfmSummary:
    """Per customer: repeat purchases ``x``, time of the last purchase ``t_x`` and age ``T`` (from the first
    purchase), in periods; ``monetary``: mean value of the repeat purchases (0 when x = 0)."""

    customers: list[str]
    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    monetary: FloatArray


def summarize(
    transactions: Iterable[tuple[str, date, float]], end: date, period_days: float = 7.0
) -> RfmSummary:
    """Build the BG/NBD inputs from (customer, day, amount); purchases on one day count as one."""
    by_customer: dict[str, dict[date, float]] = {}
    for customer, day, amount in transactions:
        if day > end:
            continue
        days = by_customer.setdefault(customer, {})
        days[day] = days.get(day, 0.0) + amount
    customers = sorted(by_customer)
    x: list[float] = []
    t_x: list[float] = []
    age: list[float] = []
    monetary: list[float] = []
    for customer in customers:
        ordered = sorted(by_customer[customer])
        first, last = ordered[0], ordered[-1]
        x.append(len(ordered) - 1)
        t_x.append((last - first).days / period_days)
        age.append((end - first).days / period_days)
        repeats = [by_customer[customer][d] for d in ordered[1:]]
        monetary.append(float(np.mean(repeats)) if repeats else 0.0)
    return RfmSummary(
        customers, np.array(x, float), np.array(t_x, float), np.array(age, float), np.array(monetary)
    )


def bgnbd_log_likelihood(params: BgNbd, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf
        )
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4), dtype=np.float64)


def fit_bgnbd(x: FloatArray, t_x: FloatArray, T: FloatArray) -> BgNbd:
    """Maximum-likelihood BG/NBD parameters."""
    scale = max(float(np.max(T)), 1e-9)  # fit on a unit time scale for conditioning, then rescale alpha

    def negative(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        ll = bgnbd_log_likelihood(BgNbd(r, alpha, a, b), x, t_x / scale, T / scale)
        return -float(np.sum(ll))

    start = np.log(np.array([1.0, 1.0, 1.0, 1.0]))
    first = minimize(
        negative, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-10}
    )
    best = minimize(negative, first.x, method="L-BFGS-B")
    solution = best.x if best.fun <= first.fun else first.x
    r, alpha, a, b = np.exp(solution)
    return BgNbd(float(r), float(alpha * scale), float(a), float(b))


def p_alive(params: BgNbd, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    ratio = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return np.asarray(1.0 / (1.0 + ratio), dtype=np.float64)


def expected_purchases(params: BgNbd, t: float, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """Expected purchases in the next ``t`` periods given (x, t_x, T)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    first = (a + b + x - 1) / (a - 1)
    numerator = first * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    denominator = 1 + np.where(
        x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0
    )
    return np.asarray(numerator / denominator, dtype=np.float64)


def gamma_gamma_log_likelihood(params: GammaGamma, x: FloatArray, m: FloatArray) -> FloatArray:
    p, q, v = params.p, params.q, params.v
    return np.asarray(
        gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
        + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + v),
        dtype=np.float64,
    )  # fmt: skip


def fit_gamma_gamma(x: FloatArray, m: FloatArray) -> GammaGamma:
    """Fit on customers with repeat purchases (x > 0) and positive mean value."""
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
    params: GammaGamma, x: FloatArray, m: FloatArray, population_mean: float
) -> FloatArray:
    """E[value per purchase | x, m]; customers without repeats get the population mean."""
    p, q, v = params.p, params.q, params.v
    with np.errstate(divide="ignore", invalid="ignore"):
        conditional = (v + m * x) * p / (p * x + q - 1)
    return np.asarray(np.where(x > 0, conditional, population_mean), dtype=np.float64)
