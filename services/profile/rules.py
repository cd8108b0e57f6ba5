"""Segment rules: JSON conditions over profile fields, validated once and evaluated in Python.

Grammar (documented in docs/profile.md and the OpenAPI of ``POST /segments``)::

    {"and": [cond, ...]}   {"or": [cond, ...]}   {"not": cond}
    {"field": "revenue", "op": "gte", "value": 100}
    {"field": "churn_band", "op": "in", "value": ["medium", "high"]}
    {"field": "last_seen", "op": "within", "value": "30d"}      # time window relative to now
    {"field": "first_seen", "op": "older_than", "value": "1y"}
    {"field": "traits.city", "op": "exists"}

Fields are the flat facts of :func:`profile_facts`; ``traits.<name>``, ``counts_by_type.<type>``,
``counts_by_channel.<channel>`` and ``consent.<purpose>`` reach into the nested ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

OPS = {
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "exists",
    "not_exists",
    "within",
    "older_than",
}
SYMBOLS = {"==": "eq", "=": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
FIELDS = {
    "id",
    "first_seen",
    "last_seen",
    "event_count",
    "orders",
    "revenue",
    "average_order_value",
    "first_order_at",
    "last_order_at",
    "recency_days",
    "average_rating",
    "rating_count",
    "sentiment_average",
    "sentiment_recent",
    "sentiment_last_label",
    "churn_band",
    "rfm_cluster",
    "clv_p_alive",
    "clv_expected_purchases",
    "clv_expected_value",
    "has_email",
    "has_phone",
}
NESTED = ("traits.", "counts_by_type.", "counts_by_channel.", "consent.")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hdwmy])\s*$")
_UNIT_DAYS = {"h": 1 / 24, "d": 1.0, "w": 7.0, "m": 30.0, "y": 365.0}


class RuleError(ValueError):
    """A rule that cannot be evaluated; the message says where."""


def parse_duration(value: Any) -> timedelta:
    """``"30d"``, ``"12h"``, ``"2w"``, ``"6m"``, ``"1y"``, a number of days, or ``{"days": 30}``."""
    if isinstance(value, bool):
        raise RuleError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return timedelta(days=float(value))
    if isinstance(value, Mapping) and set(value) <= {"days", "hours", "weeks"}:
        return timedelta(**{k: float(v) for k, v in value.items()})
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(days=float(match.group(1)) * _UNIT_DAYS[match.group(2)])
    raise RuleError(f"not a duration: {value!r} (use e.g. '30d', '12h', '2w', or a number of days)")


def validate_rule(rule: Any, path: str = "rule") -> None:
    """Raise :class:`RuleError` naming the first problem in ``rule``."""
    if not isinstance(rule, Mapping):
        raise RuleError(f"{path}: a condition must be an object")
    for key in ("and", "or"):
        if key in rule:
            items = rule[key]
            if len(rule) != 1 or not isinstance(items, list) or not items:
                raise RuleError(f"{path}.{key}: must be the only key and a non-empty list")
            for i, item in enumerate(items):
                validate_rule(item, f"{path}.{key}[{i}]")
            return
    if "not" in rule:
        if len(rule) != 1:
            raise RuleError(f"{path}.not: must be the only key")
        validate_rule(rule["not"], f"{path}.not")
        return
    field, op = rule.get("field"), SYMBOLS.get(rule.get("op", ""), rule.get("op"))
    if not isinstance(field, str) or not (field in FIELDS or field.startswith(NESTED)):
        raise RuleError(
            f"{path}.field: unknown field {field!r}; known: {', '.join(sorted(FIELDS))}, {', '.join(NESTED)}*"
        )
    if op not in OPS:
        raise RuleError(f"{path}.op: unknown operator {rule.get('op')!r}; known: {', '.join(sorted(OPS))}")
    if op in {"exists", "not_exists"}:
        return
    if "value" not in rule:
        raise RuleError(f"{path}.value: operator {op!r} needs a value")
    if op in {"within", "older_than"}:
        parse_duration(rule["value"])
    if op in {"in", "not_in"} and not isinstance(rule["value"], list):
        raise RuleError(f"{path}.value: operator {op!r} needs a list")


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if op == "contains":
        return actual is not None and expected in actual
    if actual is None:
        return False
    if isinstance(actual, datetime) and isinstance(expected, str):
        expected = datetime.fromisoformat(expected)
    try:
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        if op == "lte":
            return bool(actual <= expected)
    except TypeError:
        return False
    raise RuleError(f"unknown operator {op!r}")


def _lookup(facts: Mapping[str, Any], field: str) -> Any:
    if field in facts:
        return facts[field]
    head, _, rest = field.partition(".")
    nested = facts.get(head)
    return nested.get(rest) if isinstance(nested, Mapping) else None


def evaluate(rule: Mapping[str, Any], facts: Mapping[str, Any], now: datetime) -> bool:
    """Whether the profile described by ``facts`` satisfies ``rule`` at time ``now``."""
    if "and" in rule:
        return all(evaluate(r, facts, now) for r in rule["and"])
    if "or" in rule:
        return any(evaluate(r, facts, now) for r in rule["or"])
    if "not" in rule:
        return not evaluate(rule["not"], facts, now)
    op = SYMBOLS.get(rule["op"], rule["op"])
    actual = _lookup(facts, rule["field"])
    if op == "exists":
        return actual is not None
    if op == "not_exists":
        return actual is None
    if op in {"within", "older_than"}:
        if not isinstance(actual, datetime):
            return False
        cutoff = now - parse_duration(rule["value"])
        return actual >= cutoff if op == "within" else actual < cutoff
    return _compare(op, actual, rule["value"])


def compile_rule(rule: Mapping[str, Any]) -> Callable[[Mapping[str, Any], datetime], bool]:
    validate_rule(rule)
    return lambda facts, now: evaluate(rule, facts, now)
