"""The inputs of the CLV models (``shared.stats``: BG/NBD and Gamma-Gamma) from purchase records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np

from shared.stats import FloatArray


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
