"""Churn logic: apply events to customers' histories, rescore, decide band changes, answer queries,
pick next-best-actions. No FastAPI here, and no commit: callers own the transaction."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from services.churn import repository as repo
from services.churn.ml import bgnbd
from services.churn.ml.features import (
    KIND_OF_EVENT_TYPE,
    Activity,
    Kind,
    customer_features,
    from_days,
    to_days,
)
from services.churn.ml.model import ChurnModel, Reason
from services.churn.models import RuleRow
from services.churn.settings import ChurnSettings
from services.churn.support_signals import support_reasons
from shared.consent import MARKETING, ConsentDecision, marketing_refusal
from shared.contracts import CloudEvent, EventTypeName, Topic, stable_event_id
from shared.contracts import events as ev
from shared.contracts.support import SupportTriaged
from shared.db import forget_erased_data
from shared.errors import InvalidRequest, NotFound, NotReady
from shared.kafka import EventPublisher, InboundEvent
from shared.logging import get_logger

log = get_logger(__name__)

SOURCE = "/services/churn"
Band = Literal["low", "medium", "high"]
BANDS: tuple[Band, Band, Band] = ("low", "medium", "high")

# Rules seeded when none exist and no rules file is configured. Highest priority match wins.
DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"id": "retain-valuable", "name": "High risk, high value: retention offer", "action": "retention_offer",
     "priority": 100, "bands": ["high"], "min_value": 100.0},
    {"id": "callback-unhappy", "name": "At risk and unhappy: support call-back", "action": "support_callback",
     "priority": 90, "min_probability": 0.4, "max_sentiment": 0.4},
    {"id": "winback-high", "name": "High risk: win-back mail", "action": "win_back_mail",
     "priority": 50, "bands": ["high"]},
    {"id": "engage-medium", "name": "Medium risk: engagement mail", "action": "engagement_mail",
     "priority": 20, "bands": ["medium"]},
)  # fmt: skip


class ModelHolder:
    """The models being served; swapped atomically when a new version is trained or loaded."""

    def __init__(self) -> None:
        self.events: ChurnModel | None = None
        self.table: ChurnModel | None = None
        self.status = "starting"
        self.error: str | None = None
        self._lock = threading.Lock()

    def set(self, model: ChurnModel) -> None:
        with self._lock:
            if model.kind == "table":
                self.table = model
            else:
                self.events = model
                self.status = "ready"

    def require(self, kind: str = "events") -> ChurnModel:
        model = self.table if kind == "table" else self.events
        if model is None:
            if kind == "table":
                raise NotFound("no table model trained yet: run `crm churn train --source table`")
            raise NotReady(f"the churn model is not loaded yet (status: {self.status})")
        return model


@dataclass
class Scored:
    customer_id: str
    has_history: bool
    probability: float
    band: str
    raw_score: float | None
    base_value: float | None
    reasons: list[Reason]
    features: dict[str, float]
    value: float | None
    value_source: str | None
    sentiment: float | None
    model_version: str
    as_of: float | None
    other_weight: float | None = None
    trend: str = "steady"
    next_best_action: dict[str, Any] | None = None
    actions_withheld: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _finite(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


class ChurnService:
    def __init__(
        self, settings: ChurnSettings, holder: ModelHolder, publisher: EventPublisher | None = None
    ) -> None:
        self.settings = settings
        self.holder = holder
        self.publisher = publisher
        # Hot-path caches: the latest event time only grows; rules change only through this service's
        # API, which calls invalidate_rules(). The latest event time only matters when a sender's clock
        # runs ahead of ours (see now()).
        self._latest: float | None = None
        self._rules: list[RuleSnapshot] | None = None
        self._clv_known: bool | None = None

    # -- scoring ------------------------------------------------------------------------------

    def band(self, probability: float) -> str:
        if probability >= self.settings.band_high:
            return "high"
        if probability >= self.settings.band_medium:
            return "medium"
        return "low"

    def as_of(self, session: Session) -> float:
        """The fleet's one clock, in days: the wall clock (or ``CRM_CHURN_AS_OF``), as the profile's recency
        and CLV use it. Replayed demo data is shifted to end now, so it reads like a live shop."""
        if self.settings.as_of is not None:
            return to_days(self.settings.as_of)
        if self._latest is None:
            self._latest = repo.latest_event_time(session)
        return self.now(self._latest)

    @staticmethod
    def now(latest_event: float | None = None) -> float:
        """The wall clock in days; an event stamped ahead of it (a sender's fast clock) moves it on, so
        that event counts instead of being "after now"."""
        wall = to_days(datetime.now(UTC))
        return wall if latest_event is None else max(wall, latest_event)

    def _saw_event_time(self, time: float) -> None:
        if self._latest is None or time > self._latest:
            self._latest = time

    def score_histories(
        self,
        histories: Mapping[str, Sequence[Activity]],
        as_of: float,
        clvs: Mapping[str, float] | None = None,
        *,
        with_reasons: bool = True,
    ) -> dict[str, Scored]:
        """Score many customers at once (one model call); customers without activity are left out."""
        model = self.holder.require()
        params = self._bgnbd(model)
        ids: list[str] = []
        rows: list[dict[str, float]] = []
        for customer, history in histories.items():
            features = customer_features(history, as_of, params)
            if features is not None:
                ids.append(customer)
                rows.append(features)
        if not rows:
            return {}
        X = model.matrix(rows)
        reasons: list[list[Reason]] = [[] for _ in rows]
        base = np.full(len(rows), np.nan)
        other = np.full(len(rows), np.nan)
        if with_reasons:
            contrib, base = model.contributions(X)
            # The raw score is base + contributions (exact), which saves a second pass over the trees.
            raw = base + contrib.sum(axis=1)
            reasons = model.top_reasons(contrib, rows, self.settings.reasons_top)
            # What the listed reasons leave out, so base + reasons + other == raw score exactly.
            other = contrib.sum(axis=1) - np.array([sum(r.weight for r in rs) for rs in reasons])
        else:
            raw = model.raw_score(X)
        probability = model.calibrator(raw)
        values = self._values(params, rows)
        out: dict[str, Scored] = {}
        for i, customer in enumerate(ids):
            value, source = values[i]
            if clvs and customer in clvs:
                value, source = clvs[customer], "clv"
            p = float(probability[i])
            out[customer] = Scored(
                customer_id=customer,
                has_history=True,
                probability=p,
                band=self.band(p),
                raw_score=float(raw[i]),
                base_value=_finite(float(base[i])),
                other_weight=_finite(float(other[i])),
                reasons=reasons[i],
                features=rows[i],
                value=value,
                value_source=source,
                sentiment=_finite(rows[i].get("sentiment_mean")),
                model_version=model.version,
                as_of=as_of,
            )
        return out

    def _bgnbd(self, model: ChurnModel) -> bgnbd.BGNBDParams | None:
        raw = model.extra.get("bgnbd")
        return bgnbd.BGNBDParams(**raw) if raw else None

    def _values(
        self, params: bgnbd.BGNBDParams | None, rows: Sequence[Mapping[str, float]]
    ) -> list[tuple[float | None, str | None]]:
        """Value estimate: BG/NBD expected purchases over the horizon x average order value."""
        if params is None:
            return [(None, None)] * len(rows)
        x = np.array([r["active_days"] - 1 for r in rows])
        age = np.array([r["tenure_days"] for r in rows]) / 7.0
        t_x = np.maximum(age - np.array([r["recency_days"] for r in rows]) / 7.0, 0.0)
        expected = bgnbd.expected_transactions(params, self.settings.clv_horizon_days / 7.0, x, t_x, age)
        out: list[tuple[float | None, str | None]] = []
        for i, row in enumerate(rows):
            if row["n_purchases"] > 0:
                out.append((round(float(expected[i]) * row["monetary_avg"], 2), "bgnbd"))
            else:
                out.append((None, None))
        return out

    def score_customer(self, session: Session, customer_id: str) -> Scored:
        """A fresh score as of now (see :meth:`as_of`), with trend and next-best-action.

        A customer with no recorded activity gets the defined answer: ``has_history`` false, the model's
        prior churn rate (training base rate) as probability, its band, no reasons, trend "steady"."""
        model = self.holder.require()
        as_of = self.as_of(session)
        history = repo.histories(session, [customer_id])[customer_id]
        scored = (
            self.score_histories({customer_id: history}, as_of, self._clvs(session, [customer_id])).get(
                customer_id
            )
            if history
            else None
        )
        if scored is None:
            return Scored(
                customer_id=customer_id, has_history=False, probability=model.base_rate,
                band=self.band(model.base_rate), raw_score=None, base_value=None, reasons=[], features={},
                value=None, value_source=None, sentiment=None, model_version=model.version, as_of=as_of,
            )  # fmt: skip
        self._add_support_reasons(session, {customer_id: scored}, as_of)
        recent = repo.recent_probabilities(session, customer_id)
        scored.trend = self.trend(scored.probability, recent)
        scored.next_best_action = self.next_best_action(session, scored)
        return scored

    def _add_support_reasons(self, session: Session, scored: Mapping[str, Scored], as_of: float) -> None:
        """Support signals (crm.support_triaged.v1) push the raw score after the model, each as a reason."""
        signals = repo.support_signals(session, scored)
        if not signals:
            return
        model = self.holder.require()
        for customer, rows in signals.items():
            current = scored.get(customer)
            extra = support_reasons(rows, as_of)
            if current is None or current.raw_score is None or not extra:
                continue
            current.raw_score += sum(r.weight for r in extra)
            current.probability = float(model.calibrator(np.array([current.raw_score]))[0])
            current.band = self.band(current.probability)
            current.reasons = sorted([*current.reasons, *extra], key=lambda r: -abs(r.weight))

    def _clvs(self, session: Session, customers: Sequence[str] | set[str]) -> dict[str, float]:
        """Known CLVs; skips the query while no customer has one (the common case on the hot path)."""
        if self._clv_known is None:
            self._clv_known = repo.any_clv(session)
        return repo.clv(session, customers) if self._clv_known else {}

    def trend(self, current: float, recent: Sequence[float]) -> str:
        """Risk rising beyond ``trend_delta`` over the recent scores' mean: declining; falling: improving."""
        if not recent:
            return "steady"
        delta = current - sum(recent) / len(recent)
        if delta > self.settings.trend_delta:
            return "declining"
        if delta < -self.settings.trend_delta:
            return "improving"
        return "steady"

    def score_rows(
        self, rows: Sequence[Mapping[str, Any]], kind: str, with_reasons: bool
    ) -> list[dict[str, Any]]:
        """Score caller-given feature rows with the events or the table model."""
        model = self.holder.require(kind)
        if kind == "table":
            import pandas as pd

            from services.churn.ml.table import engineer

            frame = engineer(pd.DataFrame(list(rows)))
            for name in model.spec.names:
                if name not in frame:
                    frame[name] = np.nan
            X = model.frame_matrix(frame)
            plain = frame.to_dict(orient="records")
        else:
            X = model.matrix(rows)
            plain = [dict(r) for r in rows]
        raw = model.raw_score(X)
        probability = model.calibrator(raw)
        reasons = (
            model.top_reasons(model.contributions(X)[0], plain, self.settings.reasons_top)
            if with_reasons
            else None
        )
        bands = self.bands(probability)
        version = model.version
        return [
            {
                "probability": p,
                "band": b,
                "raw_score": r,
                "reasons": [_reason_dict(x) for x in reasons[i]] if reasons is not None else [],
                "model_version": version,
            }
            for i, (p, b, r) in enumerate(zip(probability.tolist(), bands, raw.tolist(), strict=True))
        ]

    def bands(self, probability: np.ndarray) -> list[Band]:
        codes = (probability >= self.settings.band_medium).astype(int) + (
            probability >= self.settings.band_high
        )
        return [BANDS[c] for c in codes.tolist()]

    def score_columns(
        self, columns: Mapping[str, Sequence[Any]], kind: str
    ) -> tuple[np.ndarray, list[Band], str]:
        """Column-oriented batch scoring of the events model (no reasons): the bulk path."""
        model = self.holder.require(kind)
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise InvalidRequest("every column needs the same number of values")
        n_rows = lengths.pop() if lengths else 0
        if kind == "table":
            return self._score_table_columns(model, columns, n_rows)
        probability = model.probability(model.columns_matrix(columns, n_rows))
        return probability, self.bands(probability), model.version

    def _score_table_columns(
        self, model: ChurnModel, columns: Mapping[str, Sequence[Any]], n_rows: int
    ) -> tuple[np.ndarray, list[Band], str]:
        import pandas as pd

        from services.churn.ml.table import engineer

        frame = engineer(pd.DataFrame(dict(columns)))
        for name in model.spec.names:
            if name not in frame:
                frame[name] = np.nan
        probability = model.probability(model.frame_matrix(frame))
        return probability, self.bands(probability), model.version

    # -- next-best-action ---------------------------------------------------------------------

    def next_best_action(self, session: Session, scored: Scored) -> dict[str, Any] | None:
        """The highest-priority matching rule whose action the customer may receive. Marketing actions
        (``marketing_actions``) need marketing consent; each one withheld for want of it is listed in
        ``scored.actions_withheld`` with the reason."""
        rules = self._rules
        if rules is None:
            rules = self._rules = [RuleSnapshot.of(r) for r in repo.rules(session, enabled_only=True)]
        if not rules:
            return None
        segments = set(repo.segments(session, scored.customer_id)) if any(r.segment for r in rules) else set()
        refusal: str | None = None
        checked = False
        for rule in rules:
            if not rule_matches(rule, scored, segments):
                continue
            if rule.action in self.settings.marketing_actions:
                if not checked:
                    refusal, checked = self.marketing_refusal(session, scored.customer_id), True
                if refusal is not None:
                    scored.actions_withheld.append(
                        {"rule_id": rule.id, "action": rule.action, "reason": refusal}
                    )
                    continue
            return {
                "rule_id": rule.id,
                "action": rule.action,
                "priority": rule.priority,
                "rule_name": rule.name,
            }
        return None

    def marketing_refusal(self, session: Session, customer_id: str) -> str | None:
        """Why the customer may not receive marketing, or None when they may."""
        stored = repo.consent(session, customer_id, MARKETING)
        decision = None if stored is None else ConsentDecision(stored[0], from_days(stored[1]))
        refusal = marketing_refusal(
            decision,
            needs_opt_in=self.settings.marketing_needs_opt_in,
            opt_in_setting="CRM_CHURN_MARKETING_NEEDS_OPT_IN",
        )
        return None if refusal is None else refusal.reason

    def invalidate_rules(self) -> None:
        self._rules = None

    def seed_rules(self, session: Session, rules: Sequence[Mapping[str, Any]] | None = None) -> int:
        if repo.count_rules(session):
            return 0
        chosen = rules if rules is not None else DEFAULT_RULES
        for raw in chosen:
            session.add(RuleRow(**dict(raw)))
        return len(chosen)

    # -- events -------------------------------------------------------------------------------

    def apply_events(self, events: Sequence[InboundEvent], session: Session) -> int:
        """Apply a batch: store activity, honour erase/merge, rescore touched customers, emit band changes.
        Returns how many churn-risk-changed events were emitted."""
        pending: list[dict[str, Any]] = []
        touched: set[str] = set()
        latest: float | None = None
        trigger: dict[str, str] = {}

        def flush() -> None:
            repo.add_activity(session, pending)
            pending.clear()

        for event in events:
            kind = KIND_OF_EVENT_TYPE.get(event.type)
            payload = event.payload
            if event.type == EventTypeName.SENTIMENT_SCORED and isinstance(payload, ev.SentimentScored):
                customer = payload.customer_id
                # Sentiment is scored after the interaction it is about: never count it as "after now".
                when = to_days(event.time)
                if self.settings.as_of is not None:
                    when = min(when, to_days(self.settings.as_of))
                pending.append(self._row(customer, event.id, Kind.SENTIMENT, when, 0.0, payload.score))
                touched.add(customer)
                trigger[customer] = event.id
            elif isinstance(payload, SupportTriaged):
                when = to_days(event.time)
                repo.add_support_signal(session, event.id, payload.customer_id, payload.intent, when)
                touched.add(payload.customer_id)
                trigger[payload.customer_id] = event.id
            elif kind is not None:
                subject = event.subject
                if not subject:
                    log.warning("churn_event_without_subject", event_id=event.id, type=event.type)
                    continue
                customer = subject
                if kind == Kind.IDENTIFY and isinstance(payload, ev.Identify):
                    clv = payload.traits.get("clv", payload.traits.get("customer_lifetime_value"))
                    if isinstance(clv, int | float) and not isinstance(clv, bool):
                        repo.set_clv(session, customer, float(clv))
                        self._clv_known = True
                    continue
                if kind == Kind.CONSENT and isinstance(payload, ev.ConsentChanged):
                    # Decided by event time, so a replayed or late older decision never overrides a newer one.
                    repo.set_consent(session, customer, payload.purpose, payload.granted,
                                     to_days(event.time), event.id)  # fmt: skip
                    continue
                when = to_days(event.time)
                amount = float(payload.amount) if isinstance(payload, ev.Purchase) else 0.0
                value: float | None = None
                if isinstance(payload, ev.Rating):
                    value = payload.rating
                elif isinstance(payload, ev.Review) and payload.stars is not None:
                    value = float(payload.stars)
                pending.append(self._row(customer, event.id, kind, when, amount, value))
                latest = when if latest is None else max(latest, when)
                touched.add(customer)
                trigger[customer] = event.id
            elif isinstance(payload, ev.CustomerErased):
                flush()
                repo.erase_customer(session, payload.customer_id)
                forget_erased_data(session)
                touched.discard(payload.customer_id)
            elif isinstance(payload, ev.CustomerMerged):
                flush()
                if payload.undone:
                    repo.unmerge_customers(session, payload.survivor_id, payload.merged_id)
                    touched.update({payload.survivor_id, payload.merged_id})
                else:
                    repo.merge_customers(session, payload.survivor_id, payload.merged_id)
                    touched.discard(payload.merged_id)
                    touched.add(payload.survivor_id)
                trigger[payload.survivor_id] = trigger[payload.merged_id] = event.id
            elif isinstance(payload, ev.SegmentMembershipChanged):
                repo.set_segment(
                    session, payload.customer_id, payload.segment_id, payload.segment_name, payload.joined
                )
            elif isinstance(payload, ev.NextBestActionReaction):
                repo.add_reaction(
                    session, payload.customer_id, payload.rule_id, payload.action, payload.reaction
                )
        flush()
        if latest is not None:
            repo.advance_event_time(session, latest)
            # Readers must not see the new "now" before the activity it comes with is committed.
            seen = latest
            sa_event.listen(session, "after_commit", lambda _s: self._saw_event_time(seen), once=True)
        if not touched:
            return 0
        return self.rescore(session, touched, trigger)

    @staticmethod
    def _row(
        customer: str, event_id: str, kind: int, time: float, amount: float, value: float | None
    ) -> dict[str, Any]:
        return {"customer_id": customer, "origin_customer_id": customer, "event_id": event_id, "kind": int(kind),
                "time": time, "amount": amount, "value": value}  # fmt: skip

    def rescore(self, session: Session, customers: set[str], trigger: Mapping[str, str] | None = None) -> int:
        """Recompute and store the customers' scores; emit an event for each band change."""
        session.flush()
        # Read inside this (uncommitted) transaction, bypassing the cache that HTTP readers share.
        as_of = (
            to_days(self.settings.as_of)
            if self.settings.as_of is not None
            else self.now(repo.latest_event_time(session))
        )
        histories = repo.histories(session, customers)
        scored = self.score_histories(histories, as_of, self._clvs(session, customers))
        self._add_support_reasons(session, scored, as_of)
        states = repo.score_states(session, customers)
        emissions: list[tuple[str, CloudEvent, str | None]] = []
        upserts: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        window = self.settings.trend_window
        for customer in customers:
            current = scored.get(customer)
            if current is None:
                continue
            previous, recent = states.get(customer, (None, []))
            upserts.append({
                "customer_id": customer, "probability": current.probability, "raw_score": current.raw_score or 0.0,
                "band": current.band, "reasons": [_reason_dict(r) for r in current.reasons], "value": current.value,
                "value_source": current.value_source, "sentiment": current.sentiment,
                "model_version": current.model_version, "as_of": as_of,
                "recent": [current.probability, *recent][:window], "scored_at": now,
            })  # fmt: skip
            if previous != current.band and (previous is not None or self.settings.emit_initial_band):
                emissions.append(self._band_event(current, previous, (trigger or {}).get(customer, "")))
        repo.delete_scores(session, [c for c in customers if c not in scored and c in states])
        repo.upsert_scores(session, upserts)
        if emissions and self.publisher is not None:
            # Published before the transaction commits, with ids derived from the triggering event: a retry
            # after a crash re-sends the same ids, which every consumer's ledger drops (exactly once in effect).
            self.publisher.publish_and_wait(emissions)
        return len(emissions)

    def rescore_all(self, session_factory: Any, page: int = 500) -> dict[str, float]:
        """Rescore every scored customer as of now (see :meth:`as_of`), one transaction per page, and
        emit band changes: silent customers drift into higher risk without events of their own."""
        after, customers, changed = "", 0, 0
        with session_factory() as session:
            as_of = self.as_of(session)
        while True:
            with session_factory() as session, session.begin():
                ids = repo.scored_customers(session, after, page)
                if not ids:
                    break
                trigger = dict.fromkeys(ids, f"rescore@{as_of}")
                changed += self.rescore(session, set(ids), trigger)
            customers += len(ids)
            after = ids[-1]
        return {"customers": customers, "band_changes": changed, "as_of": as_of}

    def _band_event(
        self, scored: Scored, previous: str | None, trigger: str
    ) -> tuple[str, CloudEvent, str | None]:
        payload = ev.ChurnRiskChanged(
            customer_id=scored.customer_id,
            probability=min(1.0, max(0.0, scored.probability)),
            band=scored.band,
            previous_band=previous,
            reasons=[r.render() for r in scored.reasons][:20],
            model_version=scored.model_version,
        )
        event = CloudEvent.new(
            EventTypeName.CHURN_RISK_CHANGED,
            payload,
            source=SOURCE,
            subject=scored.customer_id,
            id=stable_event_id("churn-risk-changed", scored.customer_id, previous, scored.band, trigger),
        )
        return self.settings.topic(Topic.CHURN_RISK_CHANGED), event, scored.customer_id


@dataclass(frozen=True)
class RuleSnapshot:
    """A rule detached from its session (cached between requests)."""

    id: str
    name: str
    action: str
    priority: int
    bands: list[str] | None
    min_probability: float | None
    max_probability: float | None
    min_value: float | None
    max_value: float | None
    min_sentiment: float | None
    max_sentiment: float | None
    segment: str | None

    @classmethod
    def of(cls, row: RuleRow) -> RuleSnapshot:
        return cls(row.id, row.name, row.action, row.priority, row.bands, row.min_probability, row.max_probability,
                   row.min_value, row.max_value, row.min_sentiment, row.max_sentiment, row.segment)  # fmt: skip


def rule_matches(rule: RuleSnapshot | RuleRow, scored: Scored, segments: set[str]) -> bool:
    p, value, sentiment = scored.probability, scored.value, scored.sentiment
    checks = [
        rule.bands is None or scored.band in rule.bands,
        rule.min_probability is None or p >= rule.min_probability,
        rule.max_probability is None or p <= rule.max_probability,
        rule.min_value is None or (value is not None and value >= rule.min_value),
        rule.max_value is None or (value is not None and value <= rule.max_value),
        rule.min_sentiment is None or (sentiment is not None and sentiment >= rule.min_sentiment),
        rule.max_sentiment is None or (sentiment is not None and sentiment <= rule.max_sentiment),
        rule.segment is None or rule.segment in segments,
    ]
    return all(checks)


def _reason_dict(reason: Reason) -> dict[str, Any]:
    value = reason.value
    if isinstance(value, np.generic):
        value = value.item()
    return {"feature": reason.feature, "value": value, "weight": reason.weight, "text": reason.render()}
