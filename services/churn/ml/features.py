"""Churn features from a customer's event history as of a cutoff, and point-in-time training sets.

One function, :func:`customer_features`, computes a customer's features from their activity strictly
up to ``as_of`` (events after it are ignored), for training snapshots and for online scoring alike, so
serving sees exactly what training saw. Times are in days (float, since the Unix epoch).

"As of" in the online service is the wall clock, the fleet's one clock (or the configured
``CRM_CHURN_AS_OF``); replays of historical data shift it to end now (``shared.replay``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import numpy as np

from services.churn.ml.model import FeatureSpec
from shared.datasets import package_file
from shared.stats import bgnbd

DAY_SECONDS = 86_400.0


class Kind(IntEnum):
    """Activity kinds kept per customer. SENTIMENT, IDENTIFY and CONSENT are not customer activity for
    recency and the churn label (sentiment is derived from a review or message already counted)."""

    PURCHASE = 0
    VIEW = 1
    CART = 2
    RATING = 3
    REVIEW = 4
    SUPPORT = 5
    SENTIMENT = 6
    IDENTIFY = 7
    CONSENT = 8


ACTIVE_KINDS = frozenset({Kind.PURCHASE, Kind.VIEW, Kind.CART, Kind.RATING, Kind.REVIEW, Kind.SUPPORT})

KIND_OF_EVENT_TYPE = {
    "crm.purchase.v1": Kind.PURCHASE,
    "crm.product_view.v1": Kind.VIEW,
    "crm.add_to_cart.v1": Kind.CART,
    "crm.rating.v1": Kind.RATING,
    "crm.review.v1": Kind.REVIEW,
    "crm.support_message.v1": Kind.SUPPORT,
    "crm.identify.v1": Kind.IDENTIFY,
    "crm.consent_changed.v1": Kind.CONSENT,
    "crm.sentiment_scored.v1": Kind.SENTIMENT,
}

WINDOWS = (30, 90, 180, 365)

FEATURE_TEMPLATES: dict[str, str] = {
    "recency_days": "no activity for {value:.0f} days",
    "purchase_recency_days": "no purchase for {value:.0f} days",
    "tenure_days": "customer for {value:.0f} days",
    "n_activity": "{value:.0f} interactions in total",
    "n_purchases": "{value:.0f} purchases in total",
    "active_days": "active on {value:.0f} distinct days",
    "activity_30": "{value:.0f} interactions in the last 30 days",
    "activity_90": "{value:.0f} interactions in the last 90 days",
    "activity_180": "{value:.0f} interactions in the last 180 days",
    "activity_365": "{value:.0f} interactions in the last 365 days",
    "purchases_90": "{value:.0f} purchases in the last 90 days",
    "spend_90": "spent {value:.2f} in the last 90 days",
    "spend_365": "spent {value:.2f} in the last 365 days",
    "trend_30": "activity trend, last 30 vs previous 30 days {value:+.2f}",
    "trend_90": "activity trend, last 90 vs previous 90 days {value:+.2f}",
    "monetary_avg": "average order value {value:.2f}",
    "monetary_total": "spent {value:.2f} in total",
    "gap_mean_days": "usually {value:.0f} days between active days",
    "gap_std_days": "gaps between active days vary by {value:.0f} days",
    "gap_ratio": "silent for {value:.1f}x the usual gap",
    "activity_rate": "{value:.3f} interactions per day of tenure",
    "n_views": "{value:.0f} product views",
    "n_carts": "{value:.0f} add-to-carts",
    "n_ratings": "{value:.0f} ratings",
    "rating_mean": "average rating {value:.1f} of 5",
    "low_rating_share": "{value:.0%} of ratings at 2 or below",
    "n_reviews": "{value:.0f} reviews",
    "n_support": "{value:.0f} support contacts",
    "support_90": "{value:.0f} support contacts in the last 90 days",
    "sentiment_mean": "average sentiment {value:.2f} (1 = positive)",
    "negative_share": "{value:.0%} of texts negative",
    "p_alive": "P(alive) {value:.2f}",
}

FEATURE_NAMES: list[str] = list(FEATURE_TEMPLATES)

MISSING_TEXT: dict[str, str] = {
    "gap_mean_days": "no repeat activity yet",
    "gap_std_days": "fewer than three active days",
    "gap_ratio": "no repeat activity yet",
    "rating_mean": "no ratings yet",
    "low_rating_share": "no ratings yet",
    "sentiment_mean": "no reviews or messages scored yet",
    "negative_share": "no reviews or messages scored yet",
    "p_alive": "P(alive) unknown",
}


def event_spec() -> FeatureSpec:
    return FeatureSpec(list(FEATURE_NAMES), {}, dict(FEATURE_TEMPLATES), dict(MISSING_TEXT))


def to_days(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() / DAY_SECONDS


def from_days(days: float) -> datetime:
    return datetime.fromtimestamp(days * DAY_SECONDS, tz=UTC)


@dataclass(frozen=True, slots=True)
class Activity:
    time: float  # days since epoch
    kind: int
    amount: float = 0.0
    value: float = math.nan  # rating (0-5) or sentiment score (P positive)


def customer_features(
    history: Sequence[Activity], as_of: float, params: bgnbd.BgNbd | None = None
) -> dict[str, float] | None:
    """Features as of ``as_of`` from ``history`` (any order; later events ignored). None: no activity yet."""
    active_times: list[float] = []
    purchase_times: list[float] = []
    amounts: list[float] = []
    ratings: list[float] = []
    sentiments: list[float] = []
    n_views = n_carts = n_reviews = n_support = support_90 = 0
    for a in history:
        if a.time > as_of:
            continue
        kind = a.kind
        if kind == Kind.SENTIMENT:
            if not math.isnan(a.value):
                sentiments.append(a.value)
            continue
        if kind not in ACTIVE_KINDS:
            continue
        active_times.append(a.time)
        if kind == Kind.PURCHASE:
            purchase_times.append(a.time)
            amounts.append(a.amount)
        elif kind == Kind.VIEW:
            n_views += 1
        elif kind == Kind.CART:
            n_carts += 1
        elif kind == Kind.RATING:
            if not math.isnan(a.value):
                ratings.append(a.value)
        elif kind == Kind.REVIEW:
            n_reviews += 1
            if not math.isnan(a.value):
                ratings.append(a.value)
        elif kind == Kind.SUPPORT:
            n_support += 1
            if as_of - a.time <= 90:
                support_90 += 1
    if not active_times:
        return None
    first, last = min(active_times), max(active_times)
    tenure = as_of - first
    ages = [as_of - t for t in active_times]
    counts = {w: sum(1 for d in ages if d <= w) for w in (*WINDOWS, 60)}
    prev_30 = counts[60] - counts[30]
    prev_90 = counts[180] - counts[90]
    days = sorted({math.floor(t) for t in active_times})
    gaps = [b - a for a, b in itertools.pairwise(days)]
    gap_mean = sum(gaps) / len(gaps) if gaps else math.nan
    gap_std = math.sqrt(sum((g - gap_mean) ** 2 for g in gaps) / len(gaps)) if len(gaps) > 1 else math.nan
    recency = as_of - last
    spend_90 = sum(m for t, m in zip(purchase_times, amounts, strict=True) if as_of - t <= 90)
    spend_365 = sum(m for t, m in zip(purchase_times, amounts, strict=True) if as_of - t <= 365)
    total = sum(amounts)
    p_alive = math.nan
    if params is not None:
        x, t_x, age = repeat_stats(days, as_of)
        p_alive = bgnbd.p_alive_one(params, x, t_x, age)
    return {
        "recency_days": recency,
        "purchase_recency_days": as_of - max(purchase_times) if purchase_times else tenure,
        "tenure_days": tenure,
        "n_activity": float(len(active_times)),
        "n_purchases": float(len(purchase_times)),
        "active_days": float(len(days)),
        "activity_30": float(counts[30]),
        "activity_90": float(counts[90]),
        "activity_180": float(counts[180]),
        "activity_365": float(counts[365]),
        "purchases_90": float(sum(1 for t in purchase_times if as_of - t <= 90)),
        "spend_90": spend_90,
        "spend_365": spend_365,
        "trend_30": (counts[30] - prev_30) / (counts[30] + prev_30 + 1),
        "trend_90": (counts[90] - prev_90) / (counts[90] + prev_90 + 1),
        "monetary_avg": total / len(amounts) if amounts else 0.0,
        "monetary_total": total,
        "gap_mean_days": gap_mean,
        "gap_std_days": gap_std,
        "gap_ratio": recency / gap_mean if gaps and gap_mean > 0 else math.nan,
        "activity_rate": len(active_times) / max(tenure, 1.0),
        "n_views": float(n_views),
        "n_carts": float(n_carts),
        "n_ratings": float(len(ratings)),
        "rating_mean": sum(ratings) / len(ratings) if ratings else math.nan,
        "low_rating_share": sum(1 for r in ratings if r <= 2) / len(ratings) if ratings else math.nan,
        "n_reviews": float(n_reviews),
        "n_support": float(n_support),
        "support_90": float(support_90),
        "sentiment_mean": sum(sentiments) / len(sentiments) if sentiments else math.nan,
        "negative_share": sum(1 for s in sentiments if s < 0.5) / len(sentiments) if sentiments else math.nan,
        "p_alive": p_alive,
    }


def repeat_stats(active_days: Sequence[int], as_of: float) -> tuple[float, float, float]:
    """BG/NBD inputs in weeks from distinct active days: repeat count, last-repeat time, age."""
    first = active_days[0]
    return float(len(active_days) - 1), (active_days[-1] - first) / 7.0, max(as_of - first, 0.0) / 7.0


def fit_bgnbd(histories: Iterable[Sequence[Activity]], as_of: float) -> bgnbd.BgNbd:
    """BG/NBD fitted on everyone's active days before ``as_of``."""
    stats = []
    for history in histories:
        days = sorted({math.floor(a.time) for a in history if a.time <= as_of and a.kind in ACTIVE_KINDS})
        if days:
            stats.append(repeat_stats(days, as_of))
    arr = np.asarray(stats, dtype=float)
    return bgnbd.fit_bgnbd(arr[:, 0], arr[:, 1], arr[:, 2], solver="multistart")


def churned_after(history: Sequence[Activity], as_of: float, label_days: float) -> int:
    """The label: 1 when the customer has no activity in ``(as_of, as_of + label_days]``."""
    end = as_of + label_days
    return int(not any(as_of < a.time <= end and a.kind in ACTIVE_KINDS for a in history))


@dataclass
class SnapshotSet:
    rows: list[dict[str, float]]
    labels: np.ndarray
    groups: np.ndarray  # customer index, so validation splits never share a customer
    cutoffs: list[float]
    params: bgnbd.BgNbd | None


def snapshots(
    histories: dict[str, list[Activity]],
    cutoffs: Sequence[float],
    label_days: float,
    *,
    with_p_alive: bool = True,
    progress: bool = False,
) -> SnapshotSet:
    """Point-in-time training rows: for each cutoff, each customer active before it, features as of the
    cutoff (BG/NBD refitted on pre-cutoff data only) and the label from the window after it."""
    from tqdm import tqdm

    rows: list[dict[str, float]] = []
    labels: list[int] = []
    groups: list[int] = []
    params = None
    index = {c: i for i, c in enumerate(histories)}
    for cutoff in cutoffs:
        params = fit_bgnbd(histories.values(), cutoff) if with_p_alive else None
        for customer, history in tqdm(histories.items(), disable=not progress, desc=f"snapshot {cutoff:.0f}"):
            features = customer_features(history, cutoff, params)
            if features is None:
                continue
            rows.append(features)
            labels.append(churned_after(history, cutoff, label_days))
            groups.append(index[customer])
    return SnapshotSet(rows, np.asarray(labels), np.asarray(groups), list(cutoffs), params)


def cdnow_histories(
    path: Any = None, max_customers: int | None = None, seed: int = 0
) -> dict[str, list[Activity]]:
    """CDNOW master transactions (lifetimes package file) as purchase histories, keyed by customer id."""
    path = path or package_file("lifetimes", "datasets", "CDNOW_master.txt")
    with open(path) as handle:
        # The master file has a header line; the 1/10 sample has an extra column (customer, id, date, qty, $).
        parsed = [line.split() for line in handle if line.strip() and line.split()[0].isdigit()]
    raw = np.asarray([[float(p[0]), float(p[-3]), float(p[-2]), float(p[-1])] for p in parsed])
    customers = raw[:, 0].astype(int)
    if max_customers is not None:
        unique = np.unique(customers)
        keep = np.random.default_rng(seed).choice(unique, size=min(max_customers, len(unique)), replace=False)
        mask = np.isin(customers, keep)
        raw, customers = raw[mask], customers[mask]
    dates = raw[:, 1].astype(int)
    histories: dict[str, list[Activity]] = {}
    for customer, date, amount in zip(customers, dates, raw[:, 3], strict=True):
        day = to_days(datetime(date // 10000, date // 100 % 100, date % 100, 12, tzinfo=UTC))
        histories.setdefault(f"cdnow-{customer}", []).append(Activity(day, Kind.PURCHASE, float(amount)))
    return histories


def cutoffs_before(end: float, label_days: float, count: int, step_days: float) -> list[float]:
    """``count`` cutoffs, the last one ``label_days`` before ``end`` (its label window fits in the data)."""
    last = end - label_days
    return [last - i * step_days for i in range(count)][::-1]
