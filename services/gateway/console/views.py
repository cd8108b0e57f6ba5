"""What the console's pages show, shaped from ``/v1`` answers: names, figures in words, chart data.

Plain functions and dataclasses, no HTTP: the router fetches, these shape, the templates print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.gateway.console.api import Answer
from services.gateway.console.live import LiveEvents

TIMELINE_PAGE = 20
EVENT_TYPES = (
    "crm.identify.v1",
    "crm.product_view.v1",
    "crm.add_to_cart.v1",
    "crm.purchase.v1",
    "crm.rating.v1",
    "crm.review.v1",
    "crm.support_message.v1",
    "crm.consent_changed.v1",
    "crm.sentiment_scored.v1",
    "crm.churn_risk_changed.v1",
)


def customer_name(profile: dict[str, Any]) -> str:
    """A person's name from their traits (name, or first and last name); empty when none is known."""
    traits = profile.get("traits") or {}
    if isinstance(traits.get("name"), str) and traits["name"].strip():
        return str(traits["name"]).strip()
    parts = [traits.get(k) for k in ("first_name", "last_name")]
    return " ".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def customer_label(profile: dict[str, Any]) -> str:
    return customer_name(profile) or str(profile.get("id", ""))


def customer_value(profile: dict[str, Any]) -> float | None:
    """Expected value (CLV) when fitted, else revenue so far."""
    clv = profile.get("clv") or {}
    if isinstance(clv.get("expected_value"), int | float):
        return float(clv["expected_value"])
    revenue = (profile.get("aggregates") or {}).get("revenue")
    return float(revenue) if isinstance(revenue, int | float) else None


def money(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:,.2f}"


def pct(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{100 * value:.0f}%"


def number(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


def when(value: Any) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM UTC'."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_type(event_type: str) -> str:
    """'crm.support_message.v1' -> 'support message'."""
    match = re.fullmatch(r"crm\.([a-z_]+)\.v\d+", event_type)
    return match.group(1).replace("_", " ") if match else event_type


FILTERS = {
    "money": money,
    "pct": pct,
    "number": number,
    "when": when,
    "short_type": short_type,
    "name_of": customer_label,
    "value_of": customer_value,
}


@dataclass
class SearchResults:
    q: str
    items: list[dict[str, Any]]
    problem: str | None
    heading: str = "Matching customers"


@dataclass
class TimelineView:
    customer_id: str
    event_type: str
    items: list[dict[str, Any]]
    next_cursor: str | None
    problem: str | None
    types: tuple[str, ...] = EVENT_TYPES

    @classmethod
    def of(cls, answer: Answer, customer_id: str, event_type: str) -> TimelineView:
        if not answer.ok:
            return cls(customer_id, event_type, [], None, f"The timeline is not available: {answer.problem}.")
        return cls(customer_id, event_type, list(answer.body["items"]), answer.body.get("next_cursor"), None)


def detail_lines(details: dict[str, Any]) -> list[tuple[str, str]]:
    """A timeline entry's details as (label, text) pairs; nested values flattened to short text."""
    lines: list[tuple[str, str]] = []
    for key, value in details.items():
        if key == "channel":
            continue
        if isinstance(value, list):
            text = "; ".join(_short(v) for v in value)
        else:
            text = _short(value)
        lines.append((key.replace("_", " "), text[:500]))
    return lines


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


FILTERS["details"] = detail_lines


@dataclass
class Customer360View:
    """The 360's parts; each is None when its service did not answer (named in ``degraded``)."""

    customer_id: str
    profile: dict[str, Any]
    segments: list[str]
    clv: dict[str, Any] | None
    sentiment: dict[str, Any] | None
    recommendations: dict[str, Any] | None
    churn: dict[str, Any] | None
    next_best_action: dict[str, Any] | None
    degraded: list[str]

    @classmethod
    def of(cls, body: dict[str, Any]) -> Customer360View:
        profile = body.get("profile") or {}
        segments = body.get("segments") or profile.get("segments") or []
        return cls(
            customer_id=body["customer_id"],
            profile=profile,
            segments=[s if isinstance(s, str) else str(s.get("name", s)) for s in segments],
            clv=body.get("clv") or profile.get("clv"),
            sentiment=body.get("sentiment"),
            recommendations=body.get("recommendations"),
            churn=body.get("churn"),
            next_best_action=body.get("next_best_action")
            or (body.get("churn") or {}).get("next_best_action"),
            degraded=list(body.get("degraded") or []),
        )

    @property
    def name(self) -> str:
        return customer_label(self.profile)

    def down(self, service: str) -> bool:
        return service in self.degraded

    @property
    def traits(self) -> list[tuple[str, Any]]:
        return sorted((self.profile.get("traits") or {}).items())

    @property
    def rfm(self) -> dict[str, Any]:
        return dict(self.profile.get("rfm") or {})

    @property
    def aggregates(self) -> dict[str, Any]:
        return dict(self.profile.get("aggregates") or {})

    @property
    def profile_sentiment(self) -> dict[str, Any]:
        return dict(self.profile.get("sentiment") or {})

    @property
    def sentiment_items(self) -> list[dict[str, Any]]:
        return list((self.sentiment or {}).get("items") or [])

    @property
    def recommended(self) -> list[dict[str, Any]]:
        return list((self.recommendations or {}).get("items") or [])

    @property
    def reasons(self) -> list[dict[str, Any]]:
        return list((self.churn or {}).get("reasons") or [])

    def charts(self) -> dict[str, Any]:
        """Chart.js data for the page: sentiment over time and the churn reasons' pushes."""
        points = sorted(
            (i["scored_at"], i["score"])
            for i in self.sentiment_items
            if isinstance(i.get("score"), int | float) and i.get("scored_at")
        )
        return {
            "sentiment": {"labels": [when(t)[:10] for t, _ in points], "values": [s for _, s in points]},
            "churn": {
                "labels": [r.get("text", r.get("feature", "")) for r in self.reasons],
                "values": [r.get("weight", 0) for r in self.reasons],
            },
        }


@dataclass
class ClusterView:
    """The k-means RFM clusters seen among customers with purchases, and points of an RFM scatter."""

    sizes: list[tuple[str, int]]
    scatter: list[dict[str, Any]]
    problem: str | None
    unclustered: int = 0
    reason: str | None = None

    @classmethod
    def of(cls, answer: Answer) -> ClusterView:
        if not answer.ok:
            return cls([], [], f"Customers cannot be read: {answer.problem}.")
        sizes: dict[str, int] = {}
        scatter: list[dict[str, Any]] = []
        unclustered = 0
        reason = None
        for customer in answer.body["items"]:
            rfm = customer.get("rfm") or {}
            cluster = rfm.get("cluster")
            if cluster is None:
                unclustered += 1
                reason = reason or rfm.get("reason")
            name = str(cluster or "not clustered")
            sizes[name] = sizes.get(name, 0) + 1
            if isinstance(rfm.get("recency_days"), int | float) and isinstance(
                rfm.get("monetary"), int | float
            ):
                scatter.append(
                    {
                        "x": round(float(rfm["recency_days"]), 1),
                        "y": round(float(rfm["monetary"]), 2),
                        "cluster": name,
                        "id": customer["id"],
                    }
                )
        return cls(sorted(sizes.items(), key=lambda kv: -kv[1]), scatter, None, unclustered, reason)


@dataclass(frozen=True)
class RuleField:
    name: str
    label: str
    ops: tuple[str, ...]
    hint: str


RULE_FIELDS = (
    RuleField("revenue", "Revenue", ("gte", "lte", "gt", "lt"), "an amount, e.g. 100"),
    RuleField("orders", "Orders", ("gte", "lte", "eq"), "a count, e.g. 2"),
    RuleField("churn_band", "Churn band", ("eq", "ne"), "low, medium or high"),
    RuleField("rfm_cluster", "RFM cluster", ("eq", "ne"), "a cluster name, e.g. champions"),
    RuleField("last_seen", "Last seen", ("within", "older_than"), "a window, e.g. 30d"),
    RuleField("event_count", "Events", ("gte", "lte"), "a count"),
    RuleField("average_rating", "Average rating", ("gte", "lte"), "1 to 5"),
    RuleField("clv_expected_value", "Expected value (CLV)", ("gte", "lte"), "an amount"),
)
OP_WORDS = {
    "gte": "at least",
    "lte": "at most",
    "gt": "more than",
    "lt": "less than",
    "eq": "is",
    "ne": "is not",
    "within": "within the last",
    "older_than": "longer ago than",
}
_NUMERIC = {"revenue", "orders", "event_count", "average_rating", "clv_expected_value"}
_WINDOW = re.compile(r"^\d+[dhwmy]$")


@dataclass
class RuleDraft:
    """A rule from the editor's rows (all must hold), with the ``/v1/customers`` filters that count its
    members when every row has one (``search_params``; None: the count is known once it is saved)."""

    rule: dict[str, Any]
    words: str
    search_params: dict[str, Any] | None
    problem: str | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, fields: list[str], ops: list[str], values: list[str]) -> RuleDraft:
        known = {f.name: f for f in RULE_FIELDS}
        conditions: list[dict[str, Any]] = []
        words: list[str] = []
        for name, op, raw in zip(fields, ops, values, strict=False):
            raw = raw.strip()
            if not name and not raw:
                continue
            spec = known.get(name)
            if spec is None or op not in spec.ops:
                return cls({}, "", None, f"Choose a field and a comparison for every row ({name!r} {op!r}).")
            if not raw:
                return cls({}, "", None, f"Give a value for {spec.label.lower()}: {spec.hint}.")
            value: Any = raw
            if name in _NUMERIC:
                try:
                    value = int(raw) if name in {"orders", "event_count"} else float(raw)
                except ValueError:
                    return cls({}, "", None, f"{spec.label} needs {spec.hint}, not {raw!r}.")
            if op in {"within", "older_than"} and not _WINDOW.match(raw):
                return cls({}, "", None, f"{spec.label} needs {spec.hint}, not {raw!r}.")
            conditions.append({"field": name, "op": op, "value": value})
            words.append(f"{spec.label.lower()} {OP_WORDS[op]} {raw}")
        if not conditions:
            return cls({}, "", None, "Add at least one condition.")
        rule = conditions[0] if len(conditions) == 1 else {"and": conditions}
        return cls(rule, " and ".join(words), _search_params(conditions), None, conditions)


def _search_params(conditions: list[dict[str, Any]]) -> dict[str, Any] | None:
    params: dict[str, Any] = {}
    for c in conditions:
        name, op, value = c["field"], c["op"], c["value"]
        if name == "revenue" and op == "gte":
            params["min_revenue"] = value
        elif name == "revenue" and op == "lte":
            params["max_revenue"] = value
        elif name == "orders" and op == "gte":
            params["min_orders"] = value
        elif name == "churn_band" and op == "eq" and value in {"low", "medium", "high"}:
            params["churn_band"] = value
        elif name == "rfm_cluster" and op == "eq":
            params["cluster"] = value
        elif name == "last_seen" and op in {"within", "older_than"}:
            moment = (datetime.now(UTC) - _window(str(value))).isoformat()
            params["last_seen_after" if op == "within" else "last_seen_before"] = moment
        else:
            return None
    return params


def _window(text: str) -> timedelta:
    amount, unit = int(text[:-1]), text[-1]
    days = {"h": 1 / 24, "d": 1, "w": 7, "m": 30, "y": 365}[unit]
    return timedelta(days=amount * days)


AT_RISK_PAGE = 25


@dataclass
class AtRiskView:
    """One page of the at-risk list after the band and segment filters, ranked by value at risk."""

    rows: list[dict[str, Any]]
    problem: str | None
    total: int = 0
    matching: int = 0
    offset: int = 0
    page_size: int = AT_RISK_PAGE

    @property
    def next_offset(self) -> int | None:
        after = self.offset + self.page_size
        return after if after < self.matching else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.page_size) if self.offset > 0 else None

    @classmethod
    def of(cls, answer: Answer, members: Answer | None, band: str, offset: int = 0) -> AtRiskView:
        if not answer.ok:
            return cls([], f"The at-risk list is not available: {answer.problem}.")
        rows = list(answer.body["customers"])
        total = len(rows)
        if members is not None:
            if not members.ok:
                return cls([], f"The segment's members cannot be read: {members.problem}.")
            inside = {m["id"] for m in members.body["items"]}
            rows = [r for r in rows if r["customer_id"] in inside]
        if band:
            rows = [r for r in rows if r.get("band") == band]
        rows.sort(key=lambda r: (-(r.get("value_at_risk") or 0), -r.get("probability", 0)))
        return cls(rows[offset : offset + AT_RISK_PAGE], None, total, len(rows), offset)


def live_status(live: LiveEvents) -> dict[str, Any]:
    return {"listening": live.listening, "missing": live.missing_topics}


@dataclass
class ModelRow:
    part: str
    version: str | None
    detail: str


@dataclass
class MetricRow:
    """One model version with its measured figures, as the models page lists them."""

    part: str
    version: str
    serving: bool
    figures: list[tuple[str, str]]


def _figures(values: Any, keep: int = 6) -> list[tuple[str, str]]:
    """The numeric entries of a metrics dict, rounded, in a stable order (the first ``keep``)."""
    if not isinstance(values, dict):
        return []
    numbers = [
        (k, v) for k, v in sorted(values.items()) if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    # Quality figures (AUC, Brier, log loss, NDCG) before counts of rows and customers.
    numbers.sort(key=lambda kv: not any(w in kv[0] for w in ("auc", "brier", "loss", "ndcg", "recall")))
    return [(k.replace("_", " "), f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in numbers[:keep]]


def catalog_rows(catalog: Any) -> list[MetricRow]:
    """GET /v1/models as rows: recommender versions with offline metrics and click-through, the sentiment
    models with their validation and held-out accuracy, the churn model with its metrics."""
    if not isinstance(catalog, dict):
        return []
    rows: list[MetricRow] = []
    recsys = catalog.get("recsys") or {}
    for meta in recsys.get("versions", []):
        online = meta.get("online") or {}
        offline = {k: v for k, v in (meta.get("metrics") or {}).items() if k != "validation_users"}
        figures = _figures(offline)
        if online:
            figures += [
                ("impressions", str(online.get("impressions", 0))),
                ("clicks", str(online.get("clicks", 0))),
            ]
            if online.get("ctr") is not None:
                figures.append(("click-through", f"{online['ctr']:.3f}"))
        rows.append(MetricRow("Recommender", str(meta.get("version")), bool(meta.get("serving")), figures))
    for model in (catalog.get("sentiment") or {}).get("models", []):
        figures = (
            [("validation accuracy", f"{model['val_acc']:.3f}")] if model.get("val_acc") is not None else []
        )
        figures += [
            (f"held-out {name.replace('_', ' ')}", f"{acc:.3f}")
            for name, acc in sorted((model.get("test_acc") or {}).items())
        ]
        language = {"en": "English", "zh": "Chinese"}.get(model.get("language"), model.get("language"))
        rows.append(MetricRow(f"Sentiment ({language})", str(model.get("model_version")), True, figures))
    churn = catalog.get("churn") or {}
    if churn.get("version"):
        rows.append(MetricRow("Churn", str(churn["version"]), True, _figures(churn.get("metrics"))))
    return rows


@dataclass
class ModelsView:
    """Model versions in service as far as the public API shows them."""

    catalog: Any
    rows: list[ModelRow]
    catalog_problem: str | None
    metric_rows: list[MetricRow]

    @classmethod
    def of(
        cls, models: Answer, at_risk: Answer, sample: Answer, recs: Answer, sentiment: Answer
    ) -> ModelsView:
        rows: list[ModelRow] = []
        if recs.ok and isinstance(recs.body, dict):
            rows.append(
                ModelRow(
                    "Recommender",
                    recs.body.get("model_version"),
                    f"strategy {recs.body.get('strategy')} for a recent customer",
                )
            )
        elif recs.status != 204:
            rows.append(ModelRow("Recommender", None, f"not known: {recs.problem}"))
        if sentiment.ok and isinstance(sentiment.body, dict):
            for result in sentiment.body.get("results", []):
                language = {"en": "English", "zh": "Chinese"}.get(
                    result.get("language"), result.get("language")
                )
                rows.append(
                    ModelRow(
                        f"Sentiment ({language})",
                        result.get("model_version"),
                        "scores reviews and support messages",
                    )
                )
        else:
            rows.append(ModelRow("Sentiment", None, f"not known: {sentiment.problem}"))
        if at_risk.ok and at_risk.body.get("customers"):
            version = at_risk.body["customers"][0].get("model_version")
            rows.append(ModelRow("Churn", version, "scores the at-risk list and every 360"))
        elif not at_risk.ok:
            rows.append(ModelRow("Churn", None, f"not known: {at_risk.problem}"))
        if sample.ok and sample.body.get("items"):
            clv = sample.body["items"][0].get("clv") or {}
            rows.append(
                ModelRow(
                    "CLV (BG/NBD + Gamma-Gamma)",
                    clv.get("model_version"),
                    clv.get("reason") or f"horizon {clv.get('horizon_days')} days",
                )
            )
        catalog = models.body if models.ok else None
        problem = None
        if not models.ok:
            problem = (
                "Offline metrics, click-through per recommender version and the sentiment model's "
                "measured accuracy need GET /v1/models, which this gateway does not serve yet"
                if models.status == 404
                else f"The model catalog is not available: {models.problem}."
            )
        if catalog is not None and catalog.get("degraded"):
            problem = f"Not answered by: {', '.join(catalog['degraded'])}; the rest is below"
        return cls(catalog, rows, problem, catalog_rows(catalog))
