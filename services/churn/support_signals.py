"""Support signals on top of the churn model: a recent cancel intent and complaints raise the log-odds of churn,
each as a reason in words ("asked to cancel 2 days ago, +0.93"). They come from crm.support_triaged.v1 and are
added after the model (which is trained on activity only), so base + reasons + other stays the raw score."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.churn.ml.model import Reason

WINDOW_DAYS = 30.0
# Log-odds of a cancel intent on the day it was written, halving every CANCEL_HALF_LIFE_DAYS.
CANCEL_WEIGHT = 1.0
CANCEL_HALF_LIFE_DAYS = 14.0
COMPLAINT_WEIGHT = 0.3
MAX_COMPLAINTS = 3


@dataclass(frozen=True)
class SupportSignal:
    intent: str
    time: float  # days since the epoch, as churn's activity times


def support_reasons(signals: Sequence[SupportSignal], as_of: float) -> list[Reason]:
    recent = [s for s in signals if 0 <= as_of - s.time <= WINDOW_DAYS]
    reasons = []
    cancels = [s for s in recent if s.intent == "cancel"]
    if cancels:
        days = max(0.0, as_of - max(s.time for s in cancels))
        weight = CANCEL_WEIGHT * math.pow(0.5, days / CANCEL_HALF_LIFE_DAYS)
        when = "today" if days < 1 else f"{int(days)} day{'s' if int(days) != 1 else ''} ago"
        reasons.append(Reason("support_cancel_intent", round(days, 1), weight, f"asked to cancel {when}"))
    complaints = sum(1 for s in recent if s.intent == "complaint")
    if complaints:
        count = min(complaints, MAX_COMPLAINTS)
        text = f"{complaints} complaint{'s' if complaints != 1 else ''} to support in {int(WINDOW_DAYS)} days"
        reasons.append(Reason("support_complaints", complaints, COMPLAINT_WEIGHT * count, text))
    return reasons
