"""Churn's use of BG/NBD (``shared.stats.bgnbd``): its parameters and its expected-transactions value
estimate. The features fit BG/NBD on active days (``features.fit_bgnbd``)."""

from __future__ import annotations

from numpy.typing import ArrayLike

from shared.stats import FloatArray, floats
from shared.stats.bgnbd import BgNbd, expected_purchases, p_alive

BGNBDParams = BgNbd
"""The name the service reads stored parameters with (``BGNBDParams(**model.extra["bgnbd"])``)."""


def expected_transactions(params: BgNbd, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """E[transactions in the next ``t`` weeks | history]. For ``a <= 1`` the churn service has always used
    the customer's alive-weighted historical rate instead of the closed form; kept so its value estimates
    stay what they were."""
    if params.a <= 1.0:
        x, t_x, T = floats(x, t_x, T)
        rate = (x + params.r) / (params.alpha + T)
        return p_alive(params, x, t_x, T) * rate * t
    return expected_purchases(params, t, x, t_x, T)
