"""Marketing consent: the one rule every service applies before it markets to a customer.

A customer's decision about a purpose is their latest ``crm.consent_changed.v1`` for it by event time
(a replayed or late older decision never overrides a newer one; on a tie the one applied last wins).
Marketing is refused when that decision withdrew consent, and, in opt-in mode (each service's
``CRM_<SERVICE>_MARKETING_NEEDS_OPT_IN``), also when no decision was ever recorded. churn (next-best-
actions), the gateway (marketing webhooks) and profile (marketing segment exports) all decide with this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

MARKETING = "marketing"
WITHDRAWN = "marketing consent withdrawn"
NOT_RECORDED = "no marketing consent recorded"


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    granted: bool
    at: datetime  # the event time of the crm.consent_changed.v1 that decided it

    def supersedes(self, current: ConsentDecision | None) -> bool:
        """Whether this decision replaces ``current`` (latest event time wins)."""
        return current is None or _utc(self.at) >= _utc(current.at)


@dataclass(frozen=True, slots=True)
class MarketingRefusal:
    """Why a customer may not be marketed to: ``summary`` is one of WITHDRAWN / NOT_RECORDED (what a
    report groups by), ``reason`` the sentence shown for this customer."""

    summary: str
    reason: str


def marketing_refusal(
    decision: ConsentDecision | None, *, needs_opt_in: bool, opt_in_setting: str
) -> MarketingRefusal | None:
    """None when the customer may receive marketing; otherwise why not. ``opt_in_setting`` names the
    caller's setting in the reason, so a reader knows which switch made a missing decision a refusal."""
    if decision is None:
        if needs_opt_in:
            return MarketingRefusal(NOT_RECORDED, f"{NOT_RECORDED} ({opt_in_setting})")
        return None
    if decision.granted:
        return None
    return MarketingRefusal(WITHDRAWN, f"{WITHDRAWN} on {_utc(decision.at).date().isoformat()}")


def decision_from_profile(value: object) -> ConsentDecision | None:
    """A decision as the profile stores it in ``consent[purpose]``: ``{"granted": bool, "at": iso}``."""
    if not isinstance(value, dict) or not isinstance(value.get("granted"), bool):
        return None
    try:
        at = datetime.fromisoformat(str(value.get("at")))
    except ValueError:
        at = datetime.min.replace(tzinfo=UTC)
    return ConsentDecision(value["granted"], at)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
