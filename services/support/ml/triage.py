"""Urgency, routing and escalation of a classified message: pure rules over the intent, the language, the
customer's sentiment, churn band and value (no I/O; the service gathers the context)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.support.ml.classifier import UNKNOWN
from services.support.settings import RoutingRule

URGENCY_ORDER = {"low": 0, "medium": 1, "high": 2}
# How pressing each default intent is on its own (0..1); intents of a custom catalog default to 0.2.
INTENT_URGENCY = {
    "cancel": 0.6,
    "human_agent": 0.5,
    "complaint": 0.5,
    "delivery_problem": 0.4,
    "payment_failed": 0.4,
    "account_access": 0.4,
    "refund": 0.3,
    "billing": 0.3,
    "technical_issue": 0.3,
    UNKNOWN: 0.3,
    "order_status": 0.2,
    "change_order": 0.3,
    "return_exchange": 0.2,
    "product_question": 0.1,
    "praise": 0.0,
}
_PRESSING = re.compile(
    r"\b(?:urgent(?:ly)?|asap|immediately|right now|today|emergency)\b|紧急|马上|立刻|尽快|急",
    re.IGNORECASE,
)
_ASKS_FOR_PERSON = re.compile(
    r"\b(?:real person|human|manager|supervisor|live agent|speak to (?:someone|somebody|an agent))\b|人工|真人|主管|经理",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CustomerContext:
    name: str | None = None
    churn_band: str | None = None
    revenue: float = 0.0
    sentiment: str | None = None  # label of the customer's latest scored text


@dataclass(frozen=True)
class Decision:
    urgency: str
    urgency_score: float
    queue: str
    escalated: bool
    escalation_reasons: list[str]


@dataclass(frozen=True)
class TriagePolicy:
    rules: Sequence[RoutingRule]
    default_queue: str
    escalate_intents: frozenset[str]
    high_value_revenue: float


def urgency_of(text: str, intent: str, context: CustomerContext, policy: TriagePolicy) -> float:
    score = INTENT_URGENCY.get(intent, 0.2)
    if context.sentiment == "negative":
        score += 0.2
    if context.churn_band == "high":
        score += 0.25
    elif context.churn_band == "medium":
        score += 0.1
    if context.revenue >= policy.high_value_revenue > 0:
        score += 0.1
    if _PRESSING.search(text):
        score += 0.2
    return min(score, 1.0)


def band_of(score: float) -> str:
    return "high" if score >= 0.7 else "medium" if score >= 0.4 else "low"


def route(intent: str, language: str, urgency: str, context: CustomerContext, policy: TriagePolicy) -> str:
    for rule in policy.rules:
        if rule.intents and intent not in rule.intents:
            continue
        if rule.languages and language not in rule.languages:
            continue
        if rule.sentiments and context.sentiment not in rule.sentiments:
            continue
        if rule.churn_bands and context.churn_band not in rule.churn_bands:
            continue
        if rule.min_urgency and URGENCY_ORDER[urgency] < URGENCY_ORDER[rule.min_urgency]:
            continue
        return rule.queue
    return policy.default_queue


def decide(text: str, intent: str, language: str, context: CustomerContext, policy: TriagePolicy) -> Decision:
    score = urgency_of(text, intent, context, policy)
    urgency = band_of(score)
    reasons = []
    if intent == "human_agent" or _ASKS_FOR_PERSON.search(text):
        reasons.append("asked for a person")
    if intent in policy.escalate_intents and intent != "human_agent":
        reasons.append(f"intent {intent}")
    if intent == UNKNOWN:
        reasons.append("low confidence")
    if context.churn_band == "high":
        reasons.append("customer at high churn risk")
    return Decision(
        urgency=urgency,
        urgency_score=score,
        queue=route(intent, language, urgency, context, policy),
        escalated=bool(reasons),
        escalation_reasons=reasons,
    )
