"""The profile logic: identity resolution, incremental aggregates, merges, segments, privacy.

No FastAPI here and no commit: callers (the consumer loop, the API's unit of work) own the transaction.

Identity rules (also in docs/architecture.md):

* Every identifier (customer id, anonymous id, email, phone, external id) is stored only as a keyed hash
  pointing at one profile. Known identifiers attach the event to that profile; unknown identifiers of the
  event are attached to it too.
* A new profile's id is deterministic: the event's ``customer_id`` when given, else ``cus_`` + a keyed
  hash of the most stable identifier given (so a replay produces the same ids).
* When the identifiers of one ``identify`` event belong to two or more profiles they are merged. The
  survivor is the older profile (earliest ``first_seen``; tie: smaller id). Traits, email and phone:
  the survivor's value wins unless it is missing. Counters add up; first/last dates take min/max; churn,
  sentiment recency, RFM cluster and CLV are the survivor's unless missing. Other event types never
  merge; they attach to the owner of their highest-priority identifier (customer id > external ids >
  email > phone > anonymous id).
* A merge keeps a snapshot of both profiles, the identifiers and timeline entries it moved and both
  segment memberships, so ``undo`` restores both exactly as they were before the merge. Events that
  reached the survivor after the merge stay with the survivor.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from services.profile import repository as repo
from services.profile.models import ErasureReceipt, Merge, Segment
from services.profile.pii import PiiVault
from services.profile.rules import RuleError, evaluate, validate_rule
from services.profile.schemas import (
    Aggregates,
    ChurnRisk,
    Clv,
    CustomerPatch,
    CustomerProfile,
    MergeResult,
    Rfm,
    Sentiment,
)
from shared.consent import (
    MARKETING,
    NOT_RECORDED,
    WITHDRAWN,
    ConsentDecision,
    decision_from_profile,
    marketing_refusal,
)
from shared.contracts import CloudEvent, EventTypeName, Topic, stable_event_id, utcnow
from shared.contracts.events import (
    ChurnRiskChanged,
    ConsentChanged,
    CustomerErased,
    CustomerMerged,
    CustomerRef,
    Identify,
    Interaction,
    Purchase,
    Rating,
    SegmentMembershipChanged,
    SentimentScored,
)
from shared.db import forget_erased_data
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.kafka import EventPublisher, InboundEvent
from shared.logging import get_logger

log = get_logger(__name__)

SOURCE = "/services/profile"
SENTIMENT_RECENT_WEIGHT = 0.3  # weight of the newest score in the exponentially weighted "recent" sentiment
TREND_THRESHOLD = 0.05
DATETIME_COLUMNS = ("created_at", "updated_at", "first_seen", "last_seen", "first_order_at", "last_order_at")
# Counters that add up when two profiles merge.
ADDITIVE = (
    "event_count",
    "orders",
    "revenue",
    "purchase_days",
    "rating_count",
    "rating_sum",
    "sentiment_count",
    "sentiment_sum",
)
# Fields where the survivor's value is kept unless it is missing.
SURVIVOR_FIRST = (
    "email_enc",
    "phone_enc",
    "sentiment_recent",
    "sentiment_last_label",
    "churn_probability",
    "churn_band",
    "churn_model_version",
    "rfm_cluster",
    "rfm_scores",
    "clv_p_alive",
    "clv_expected_purchases",
    "clv_expected_value",
    "clv_horizon_days",
    "clv_model_version",
)
TEXT_LIMIT = 2000
PUBLISH_TIMEOUT_S = 30.0


def resolved_json(event: InboundEvent, customer_id: str) -> bytes:
    """The event as received (same id, type, time, data) with ``subject`` = the canonical id, as JSON."""
    raw = event.raw
    if raw is not None and event.subject is None and raw[:1] == b"{" and b'"subject"' not in raw:
        # The record's own bytes with "subject" put first: ~1 us instead of ~10 us of re-serialising,
        # and every interaction the profile applies is republished. (A quote inside a JSON string is
        # escaped, so the bytes '"subject"' appear only where the document has that key.)
        return b'{"subject":' + json.dumps(customer_id).encode() + b"," + raw[1:]
    # The bus keeps the validated envelope+payload model; dumping it is one pydantic-core call, far
    # cheaper than building InboundEvent.envelope and copying it for every event.
    typed = event.typed_envelope
    head = typed.model_dump_json(exclude_none=True, exclude={"data", "subject"}).encode()
    # exclude_unset: exactly the fields the sender gave, without defaults the model filled in.
    data = typed.data.model_dump_json(exclude_unset=True).encode()  # type: ignore[attr-defined]
    return bytes(head[:-1] + b',"subject":' + json.dumps(customer_id).encode() + b',"data":' + data + b"}")


# (topic, event, key); the event is pre-serialised JSON on the hot path (resolved interactions).
Outbound = tuple[str, CloudEvent | bytes, str]


class CustomerNotFound(NotFound):
    """No customer has this id or identifier."""


class MergeNotFound(NotFound):
    """No merge has this id."""


class SegmentNotFound(NotFound):
    """No segment has this id."""


class MergeConflict(Conflict):
    """The merge cannot be applied or undone in the current state."""


class IdentifierConflict(Conflict):
    """The identifier already belongs to another customer; merge the two profiles instead."""


class InvalidSegmentRule(InvalidRequest):
    """The segment rule is not valid."""


class SegmentNameTaken(Conflict):
    """Another segment already has this name."""


def short_type(event_type: str) -> str:
    """``crm.purchase.v1`` -> ``purchase`` (the key of ``counts_by_type``)."""
    parts = event_type.split(".")
    return parts[1] if len(parts) == 3 else event_type


def identifiers_of(ref: CustomerRef) -> list[tuple[str, str]]:
    """The ref's identifiers as (kind, value), highest priority first."""
    found: list[tuple[str, str]] = []
    if ref.customer_id:
        found.append(("customer_id", ref.customer_id))
    for system, value in sorted(ref.external_ids.items()):
        found.append((f"ext:{system}", value))
    if ref.email:
        found.append(("email", ref.email))
    if ref.phone:
        found.append(("phone", ref.phone))
    if ref.anonymous_id:
        found.append(("anonymous_id", ref.anonymous_id))
    return found


def new_customer_row(customer_id: str, at: datetime, now: datetime) -> dict[str, Any]:
    return {
        "id": customer_id,
        "status": "active",
        "merged_into": None,
        "created_at": now,
        "updated_at": now,
        "first_seen": at,
        "last_seen": at,
        "traits": {},
        "email_enc": None,
        "phone_enc": None,
        "event_count": 0,
        "counts_by_type": {},
        "counts_by_channel": {},
        "orders": 0,
        "revenue": 0.0,
        "first_order_at": None,
        "last_order_at": None,
        "purchase_days": 0,
        "rating_count": 0,
        "rating_sum": 0.0,
        "sentiment_count": 0,
        "sentiment_sum": 0.0,
        "sentiment_recent": None,
        "sentiment_last_label": None,
        "churn_probability": None,
        "churn_band": None,
        "churn_model_version": None,
        "consent": {},
        "rfm_cluster": None,
        "rfm_scores": None,
        "clv_p_alive": None,
        "clv_expected_purchases": None,
        "clv_expected_value": None,
        "clv_horizon_days": None,
        "clv_model_version": None,
        "version": 1,
    }


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def sentiment_trend(row: dict[str, Any]) -> Literal["improving", "declining", "stable"] | None:
    if not row["sentiment_count"] or row["sentiment_recent"] is None:
        return None
    delta = row["sentiment_recent"] - row["sentiment_sum"] / row["sentiment_count"]
    return "improving" if delta > TREND_THRESHOLD else "declining" if delta < -TREND_THRESHOLD else "stable"


NO_PURCHASES = "no purchases yet"


def rfm_reason(row: dict[str, Any]) -> str | None:
    """Why a part of the customer's RFM is null (None when nothing is)."""
    if not row["orders"] or row["last_order_at"] is None:
        return NO_PURCHASES
    if row["rfm_cluster"] is None or row["rfm_scores"] is None:
        return "not clustered yet: the next RFM clustering (POST /models/fit, or the periodic run) scores this buyer"
    return None


def clv_reason(row: dict[str, Any]) -> str | None:
    """Why the customer's CLV is null (None when it is set)."""
    if not row["orders"] or row["first_order_at"] is None:
        return NO_PURCHASES
    if row["clv_model_version"] is None:
        return "not fitted yet: the next CLV fit (POST /models/fit, or the periodic run) includes this buyer"
    return None


def profile_facts(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The flat facts segment rules are evaluated on."""
    orders = row["orders"]
    last_order = row["last_order_at"]
    return {
        "id": row["id"],
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "event_count": row["event_count"],
        "orders": orders,
        "revenue": row["revenue"],
        "average_order_value": row["revenue"] / orders if orders else None,
        "first_order_at": row["first_order_at"],
        "last_order_at": last_order,
        "recency_days": (now - last_order).total_seconds() / 86400 if last_order else None,
        "average_rating": row["rating_sum"] / row["rating_count"] if row["rating_count"] else None,
        "rating_count": row["rating_count"],
        "sentiment_average": row["sentiment_sum"] / row["sentiment_count"]
        if row["sentiment_count"]
        else None,
        "sentiment_recent": row["sentiment_recent"],
        "sentiment_last_label": row["sentiment_last_label"],
        "churn_probability": row["churn_probability"],
        "churn_band": row["churn_band"],
        "rfm_cluster": row["rfm_cluster"],
        "clv_p_alive": row["clv_p_alive"],
        "clv_expected_purchases": row["clv_expected_purchases"],
        "clv_expected_value": row["clv_expected_value"],
        "has_email": row["email_enc"] is not None,
        "has_phone": row["phone_enc"] is not None,
        "traits": row["traits"],
        "counts_by_type": row["counts_by_type"],
        "counts_by_channel": row["counts_by_channel"],
        "consent": {k: v.get("granted") for k, v in (row["consent"] or {}).items()},
    }


def to_json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A customer row with datetimes as ISO strings (for merge snapshots)."""
    out = copy.deepcopy(row)
    for key in DATETIME_COLUMNS:
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out


def from_json_row(data: dict[str, Any]) -> dict[str, Any]:
    row = copy.deepcopy(data)
    for key in DATETIME_COLUMNS:
        if row.get(key) is not None:
            row[key] = datetime.fromisoformat(row[key])
    return row


def combine(
    survivor: dict[str, Any], merged: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The survivor after absorbing ``merged``, and the trait conflicts (survivor wins unless missing)."""
    out = copy.deepcopy(survivor)
    for key in ADDITIVE:
        out[key] = survivor[key] + merged[key]
    for key in ("first_seen", "first_order_at"):
        out[key] = _min(survivor[key], merged[key])
    for key in ("last_seen", "last_order_at"):
        out[key] = _max(survivor[key], merged[key])
    for key in ("counts_by_type", "counts_by_channel"):
        counts = dict(survivor[key])
        for name, n in merged[key].items():
            counts[name] = counts.get(name, 0) + n
        out[key] = counts
    for key in SURVIVOR_FIRST:
        if out[key] is None:
            out[key] = merged[key]
    conflicts: dict[str, Any] = {}
    traits = dict(survivor["traits"])
    for name, value in merged["traits"].items():
        if traits.get(name) is None:
            traits[name] = value
        elif traits[name] != value:
            conflicts[name] = {"survivor": traits[name], "merged": value, "kept": traits[name]}
    out["traits"] = traits
    consent = dict(survivor["consent"])
    for purpose, value in merged["consent"].items():
        # The most recent decision about a purpose wins, whichever profile it was recorded on.
        if purpose not in consent or str(value.get("at", "")) > str(consent[purpose].get("at", "")):
            consent[purpose] = value
    out["consent"] = consent
    out["updated_at"] = now
    out["version"] = survivor["version"] + 1
    return out, conflicts


def choose_survivor(a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(survivor, merged): the older profile survives (earliest first_seen; tie: smaller id)."""
    far = datetime.max.replace(tzinfo=UTC)
    key_a, key_b = (a["first_seen"] or far, a["id"]), (b["first_seen"] or far, b["id"])
    return (a, b) if key_a <= key_b else (b, a)


@dataclass
class SegmentChange:
    customer_id: str
    segment: Segment
    joined: bool


@dataclass
class MergeOutcome:
    result: MergeResult
    outbound: list[Outbound] = field(default_factory=list)


class ProfileService:
    """Everything the consumers, the API and the batch jobs do to profiles."""

    def __init__(self, vault: PiiVault, publisher: EventPublisher | None = None) -> None:
        self.vault = vault
        self.publisher = publisher

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, items: Sequence[Outbound]) -> None:
        """Publish and wait for the broker's acks, so the caller commits only what was announced."""
        if not items:
            return
        if self.publisher is None:
            log.warning("publish_skipped_no_broker", events=len(items))
            return
        records = [
            (topic, event, key.encode())
            if isinstance(event, bytes)
            else (topic, event.to_json_bytes(), (key or event.subject or event.id).encode())
            for topic, event, key in items
        ]
        self.publisher.publish_all(records, PUBLISH_TIMEOUT_S)

    # -- ingest -------------------------------------------------------------------------------

    def apply_interactions(self, events: Sequence[InboundEvent], session: Session) -> list[Outbound]:
        """Resolve, aggregate, time-line and re-evaluate segments for a batch; returns what to publish."""
        batch = _Batch(self, session)
        batch.run_interactions(events)
        return batch.outbound

    def apply_signals(self, events: Sequence[InboundEvent], session: Session) -> list[Outbound]:
        """Apply sentiment-scored and churn-risk-changed events to the profiles they name."""
        batch = _Batch(self, session)
        batch.run_signals(events)
        return batch.outbound

    # -- reads --------------------------------------------------------------------------------

    def resolve_id(self, session: Session, customer_id: str) -> dict[str, Any]:
        """The profile row for an id: a canonical id, a merged-away id (followed), or a customer_id."""
        rows = repo.load_customers(session, [customer_id], lock=False)
        row = rows.get(customer_id)
        if row is None:
            owner = repo.identifier_owners(session, [self.vault.lookup_hash("customer_id", customer_id)])
            if owner:
                row = repo.load_customers(session, owner.values(), lock=False).get(next(iter(owner.values())))
        if row is None:
            raise CustomerNotFound(f"no customer {customer_id!r}")
        return row

    def active_row(self, session: Session, customer_id: str, *, lock: bool = False) -> dict[str, Any]:
        """Like :meth:`resolve_id` but following merges to the surviving profile."""
        row = self.resolve_id(session, customer_id)
        seen = {row["id"]}
        while row["status"] == "merged" and row["merged_into"]:
            nxt = repo.load_customers(session, [row["merged_into"]], lock=lock).get(row["merged_into"])
            if nxt is None or nxt["id"] in seen:
                break
            seen.add(nxt["id"])
            row = nxt
        if lock and row["id"] == customer_id:
            row = repo.load_customers(session, [row["id"]], lock=True)[row["id"]]
        return row

    def view(
        self,
        row: dict[str, Any],
        *,
        segments: list[str] | None = None,
        identifier_kinds: list[str] | None = None,
    ) -> CustomerProfile:
        orders = row["orders"]
        now = utcnow()
        return CustomerProfile(
            id=row["id"],
            status=row["status"],
            merged_into=row["merged_into"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            traits=row["traits"],
            email=self.vault.decrypt(row["email_enc"]),
            phone=self.vault.decrypt(row["phone_enc"]),
            identifier_kinds=identifier_kinds or [],
            aggregates=Aggregates(
                event_count=row["event_count"],
                counts_by_type=row["counts_by_type"],
                counts_by_channel=row["counts_by_channel"],
                orders=orders,
                revenue=round(row["revenue"], 6),
                average_order_value=round(row["revenue"] / orders, 6) if orders else None,
                first_order_at=row["first_order_at"],
                last_order_at=row["last_order_at"],
                rating_count=row["rating_count"],
                average_rating=row["rating_sum"] / row["rating_count"] if row["rating_count"] else None,
            ),
            rfm=Rfm(
                recency_days=(now - row["last_order_at"]).total_seconds() / 86400
                if row["last_order_at"]
                else None,
                frequency=orders,
                monetary=round(row["revenue"], 6),
                scores=row["rfm_scores"],
                cluster=row["rfm_cluster"],
                reason=rfm_reason(row),
            ),
            sentiment=Sentiment(
                count=row["sentiment_count"],
                average=row["sentiment_sum"] / row["sentiment_count"] if row["sentiment_count"] else None,
                recent=row["sentiment_recent"],
                trend=sentiment_trend(row),
                last_label=row["sentiment_last_label"],
            ),
            churn=ChurnRisk(
                band=row["churn_band"],
                model_version=row["churn_model_version"],
            ),
            clv=Clv(
                p_alive=row["clv_p_alive"],
                expected_purchases=row["clv_expected_purchases"],
                expected_value=row["clv_expected_value"],
                horizon_days=row["clv_horizon_days"],
                model_version=row["clv_model_version"],
                reason=clv_reason(row),
            ),
            consent=row["consent"],
            segments=segments or [],
            version=row["version"],
            updated_at=row["updated_at"],
        )

    def full_view(self, session: Session, row: dict[str, Any]) -> CustomerProfile:
        member_of = repo.memberships(session, [row["id"]])[row["id"]]
        names = sorted(s.name for s in repo.list_segments(session) if s.id in member_of)
        kinds = sorted({i.kind for i in repo.identifiers_of(session, row["id"])})
        return self.view(row, segments=names, identifier_kinds=kinds)

    def lookup(self, session: Session, kind: str, value: str) -> str:
        owner = repo.identifier_owners(session, [self.vault.lookup_hash(kind, value)])
        if not owner:
            raise CustomerNotFound(f"no customer with this {kind}")
        return next(iter(owner.values()))

    # -- writes from the API ------------------------------------------------------------------

    def patch(
        self, session: Session, customer_id: str, patch: CustomerPatch
    ) -> tuple[dict[str, Any], list[Outbound]]:
        row = self.active_row(session, customer_id, lock=True)
        now = utcnow()
        traits = dict(row["traits"])
        for name, value in (patch.traits or {}).items():
            if value is None:
                traits.pop(name, None)
            else:
                traits[name] = value
        row["traits"] = traits
        new_identifiers = []
        for kind, value in (("email", patch.email), ("phone", patch.phone)):
            if value is None:
                continue
            digest = self.vault.lookup_hash(kind, value)
            owner = repo.identifier_owners(session, [digest]).get(digest)
            if owner is not None and owner != row["id"]:
                raise IdentifierConflict(
                    f"this {kind} belongs to customer {owner}; merge the profiles instead"
                )
            row[f"{kind}_enc"] = self.vault.encrypt(value)
            if owner is None:
                new_identifiers.append(
                    {
                        "hash": digest,
                        "kind": kind,
                        "customer_id": row["id"],
                        "value_enc": row[f"{kind}_enc"],
                        "created_at": now,
                    }
                )
        row["updated_at"] = now
        row["version"] += 1
        repo.update_customers(session, [row])
        repo.insert_identifiers(session, new_identifiers)
        changes = self.reevaluate(session, [row], now)
        trigger = f"patch:{row['id']}:{row['version']}"
        return row, self.segment_events(changes, trigger)

    # -- segments -----------------------------------------------------------------------------

    def reevaluate(
        self,
        session: Session,
        rows: Iterable[dict[str, Any]],
        now: datetime,
        segments: list[Segment] | None = None,
    ) -> list[SegmentChange]:
        """Bring the memberships of ``rows`` up to date; returns the entries and exits."""
        rows = [r for r in rows if r["status"] == "active"]
        segments = repo.list_segments(session) if segments is None else segments
        if not segments or not rows:
            return []
        current = repo.memberships(session, (r["id"] for r in rows))
        changes: list[SegmentChange] = []
        joins: list[dict[str, Any]] = []
        leaves: list[tuple[str, str]] = []
        for row in rows:
            facts = profile_facts(row, now)
            member_of = current[row["id"]]
            for segment in segments:
                inside = evaluate(segment.rule, facts, now)
                if inside and segment.id not in member_of:
                    joins.append({"segment_id": segment.id, "customer_id": row["id"], "joined_at": now})
                    changes.append(SegmentChange(row["id"], segment, True))
                elif not inside and segment.id in member_of:
                    leaves.append((segment.id, row["id"]))
                    changes.append(SegmentChange(row["id"], segment, False))
        repo.add_members(session, joins)
        repo.remove_members(session, leaves)
        return changes

    def segment_events(self, changes: Sequence[SegmentChange], trigger: str) -> list[Outbound]:
        out: list[Outbound] = []
        for change in changes:
            payload = SegmentMembershipChanged(
                customer_id=change.customer_id,
                segment_id=change.segment.id,
                segment_name=change.segment.name,
                joined=change.joined,
            )
            event = CloudEvent.new(
                EventTypeName.SEGMENT_MEMBERSHIP_CHANGED,
                payload,
                source=SOURCE,
                subject=change.customer_id,
                # Deterministic, so a re-delivered batch re-announces the same change (deduped downstream).
                id=stable_event_id("segment", change.segment.id, change.customer_id, trigger, change.joined),
            )
            out.append((Topic.SEGMENT_MEMBERSHIP_CHANGED, event, change.customer_id))
        return out

    def create_segment(
        self, session: Session, name: str, rule: dict[str, Any], description: str | None
    ) -> tuple[Segment, list[Outbound]]:
        self._check_rule(rule)
        if repo.segment_by_name(session, name) is not None:
            raise SegmentNameTaken(f"a segment named {name!r} exists")
        now = utcnow()
        segment = Segment(
            id=f"seg_{uuid.uuid4().hex[:16]}",
            name=name,
            description=description,
            rule=rule,
            created_at=now,
            updated_at=now,
        )
        session.add(segment)
        session.flush()
        return segment, self.refresh_segment(session, segment, now)

    def update_segment(
        self,
        session: Session,
        segment_id: str,
        name: str | None,
        rule: dict[str, Any] | None,
        description: str | None,
    ) -> tuple[Segment, list[Outbound]]:
        segment = self.get_segment(session, segment_id)
        if name is not None and name != segment.name:
            if repo.segment_by_name(session, name) is not None:
                raise SegmentNameTaken(f"a segment named {name!r} exists")
            segment.name = name
        if description is not None:
            segment.description = description
        if rule is not None:
            self._check_rule(rule)
            segment.rule = rule
        now = utcnow()
        segment.updated_at = now
        session.flush()
        return segment, self.refresh_segment(session, segment, now)

    def delete_segment(self, session: Session, segment_id: str) -> list[Outbound]:
        segment = self.get_segment(session, segment_id)
        members = repo.segment_member_ids(session, segment.id)
        changes = [SegmentChange(c, segment, False) for c in sorted(members)]
        repo.remove_members(session, [(segment.id, c) for c in members])
        session.delete(segment)
        session.flush()
        return self.segment_events(changes, f"segment-deleted:{segment.id}")

    def refresh_segment(
        self, session: Session, segment: Segment, now: datetime | None = None
    ) -> list[Outbound]:
        """Re-evaluate one segment over every active profile (after it is created or changed)."""
        now = now or utcnow()
        rows = repo.all_active_customers(session)
        changes = self.reevaluate(session, rows, now, segments=[segment])
        return self.segment_events(changes, f"segment:{segment.id}:{segment.updated_at.isoformat()}")

    def get_segment(self, session: Session, segment_id: str) -> Segment:
        segment = repo.get_segment(session, segment_id)
        if segment is None:
            raise SegmentNotFound(f"no segment {segment_id!r}")
        return segment

    def marketing_members_page(
        self, session: Session, segment_id: str, limit: int, offset: int, *, needs_opt_in: bool
    ) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
        """A page of the segment's members who may receive marketing (shared.consent's rule, the one churn
        applies to next-best-actions), their total, and how many were left out per reason."""
        allowed: list[str] = []
        excluded = {WITHDRAWN: 0} | ({NOT_RECORDED: 0} if needs_opt_in else {})
        for customer_id, consent in repo.member_consents(session, segment_id):
            refusal = marketing_refusal(
                decision_from_profile(consent.get(MARKETING)),
                needs_opt_in=needs_opt_in,
                opt_in_setting="CRM_PROFILE_MARKETING_NEEDS_OPT_IN",
            )
            if refusal is None:
                allowed.append(customer_id)
            else:
                excluded[refusal.summary] += 1
        page = allowed[offset : offset + limit]
        found = repo.load_customers(session, page, lock=False)
        rows = [found[c] for c in page if c in found]
        return rows, len(allowed), [{"reason": r, "count": n} for r, n in excluded.items()]

    @staticmethod
    def _check_rule(rule: dict[str, Any]) -> None:
        try:
            validate_rule(rule)
        except RuleError as exc:
            raise InvalidSegmentRule(str(exc)) from exc

    # -- merges -------------------------------------------------------------------------------

    def merge(
        self,
        session: Session,
        first_id: str,
        second_id: str,
        *,
        dry_run: bool,
        reason: str,
        trigger: str | None = None,
    ) -> MergeOutcome:
        """Merge two profiles by the documented rules (or show what that would do)."""
        a = self.active_row(session, first_id, lock=not dry_run)
        b = self.active_row(session, second_id, lock=not dry_run)
        if a["id"] == b["id"]:
            raise MergeConflict(f"{first_id!r} and {second_id!r} are already the same customer ({a['id']})")
        survivor, merged = choose_survivor(a, b)
        now = utcnow()
        combined, conflicts = combine(survivor, merged, now)
        moved_hashes = [i.hash for i in repo.identifiers_of(session, merged["id"])]
        moved_events = repo.timeline_event_ids(session, merged["id"])
        if dry_run:
            return MergeOutcome(
                MergeResult(
                    merge_id=None,
                    survivor_id=survivor["id"],
                    merged_id=merged["id"],
                    dry_run=True,
                    status="preview",
                    moved_identifiers=len(moved_hashes),
                    moved_timeline_entries=len(moved_events),
                    trait_conflicts=conflicts,
                    profile=self.view(combined),
                )
            )
        member_of = repo.memberships(session, [survivor["id"], merged["id"]])
        merge_id = "mrg_" + (
            uuid.UUID(stable_event_id("merge", survivor["id"], merged["id"], trigger)).hex[:20]
            if trigger
            else uuid.uuid4().hex[:20]
        )
        snapshot = {
            "survivor": to_json_row(survivor),
            "merged": to_json_row(merged),
            "moved_identifiers": moved_hashes,
            "moved_event_ids": moved_events,
            "memberships": {k: sorted(v) for k, v in member_of.items()},
        }
        tombstone = dict(
            merged, status="merged", merged_into=survivor["id"], updated_at=now, version=merged["version"] + 1
        )
        repo.update_customers(session, [combined, tombstone])
        repo.move_identifiers(session, moved_hashes, survivor["id"])
        repo.move_timeline(session, merged["id"], survivor["id"], None)
        segments = repo.list_segments(session)
        by_id = {s.id: s for s in segments}
        left = [
            SegmentChange(merged["id"], by_id[s], False)
            for s in sorted(member_of[merged["id"]])
            if s in by_id
        ]
        repo.remove_members(session, [(c.segment.id, merged["id"]) for c in left])
        changes = left + self.reevaluate(session, [combined], now, segments)
        session.add(
            Merge(
                id=merge_id,
                survivor_id=survivor["id"],
                merged_id=merged["id"],
                status="applied",
                reason=reason[:300],
                created_at=now,
                undone_at=None,
                snapshot=snapshot,
            )
        )
        session.flush()
        event = CloudEvent.new(
            EventTypeName.CUSTOMER_MERGED,
            CustomerMerged(merge_id=merge_id, survivor_id=survivor["id"], merged_id=merged["id"]),
            source=SOURCE,
            subject=survivor["id"],
            id=stable_event_id("merged", merge_id),
        )
        log.info(
            "customers_merged", merge_id=merge_id, survivor=survivor["id"], merged=merged["id"], reason=reason
        )
        return MergeOutcome(
            MergeResult(
                merge_id=merge_id,
                survivor_id=survivor["id"],
                merged_id=merged["id"],
                dry_run=False,
                status="applied",
                moved_identifiers=len(moved_hashes),
                moved_timeline_entries=len(moved_events),
                trait_conflicts=conflicts,
                profile=self.view(combined),
            ),
            [(Topic.CUSTOMER_MERGED, event, survivor["id"]), *self.segment_events(changes, merge_id)],
        )

    def undo_merge(self, session: Session, merge_id: str) -> MergeOutcome:
        """Restore both profiles, their identifiers, timelines and segment memberships as before the merge."""
        merge = repo.get_merge(session, merge_id)
        if merge is None:
            raise MergeNotFound(f"no merge {merge_id!r}")
        if merge.status != "applied":
            raise MergeConflict(f"merge {merge_id} is already undone")
        rows = repo.load_customers(session, [merge.survivor_id, merge.merged_id])
        survivor, merged = rows.get(merge.survivor_id), rows.get(merge.merged_id)
        if (
            survivor is None
            or merged is None
            or survivor["status"] != "active"
            or merged["merged_into"] != survivor["id"]
        ):
            raise MergeConflict(
                f"merge {merge_id} cannot be undone: a later merge or erasure changed these profiles"
            )
        snap = merge.snapshot
        now = utcnow()
        restored_survivor, restored_merged = from_json_row(snap["survivor"]), from_json_row(snap["merged"])
        repo.update_customers(session, [restored_survivor, restored_merged])
        repo.move_identifiers(session, snap["moved_identifiers"], merge.merged_id)
        repo.move_timeline(session, merge.survivor_id, merge.merged_id, snap["moved_event_ids"])
        # Memberships back to exactly what they were, announcing every difference.
        current = repo.memberships(session, [merge.survivor_id, merge.merged_id])
        by_id = {s.id: s for s in repo.list_segments(session)}
        changes: list[SegmentChange] = []
        joins, leaves = [], []
        for customer_id in (merge.survivor_id, merge.merged_id):
            before = set(snap["memberships"].get(customer_id, [])) & set(by_id)
            for segment_id in sorted(before - current[customer_id]):
                joins.append({"segment_id": segment_id, "customer_id": customer_id, "joined_at": now})
                changes.append(SegmentChange(customer_id, by_id[segment_id], True))
            for segment_id in sorted(current[customer_id] - before):
                leaves.append((segment_id, customer_id))
                changes.append(SegmentChange(customer_id, by_id[segment_id], False))
        repo.remove_members(session, leaves)
        repo.add_members(session, joins)
        merge.status = "undone"
        merge.undone_at = now
        session.flush()
        event = CloudEvent.new(
            EventTypeName.CUSTOMER_MERGED,
            CustomerMerged(
                merge_id=merge.id, survivor_id=merge.survivor_id, merged_id=merge.merged_id, undone=True
            ),
            source=SOURCE,
            subject=merge.survivor_id,
            id=stable_event_id("unmerged", merge.id),
        )
        log.info("merge_undone", merge_id=merge.id)
        return MergeOutcome(
            MergeResult(
                merge_id=merge.id,
                survivor_id=merge.survivor_id,
                merged_id=merge.merged_id,
                dry_run=False,
                status="undone",
                moved_identifiers=len(snap["moved_identifiers"]),
                moved_timeline_entries=len(snap["moved_event_ids"]),
                profile=self.view(restored_survivor),
            ),
            [
                (Topic.CUSTOMER_MERGED, event, merge.survivor_id),
                *self.segment_events(changes, f"undo:{merge.id}"),
            ],
        )

    # -- privacy ------------------------------------------------------------------------------

    def export(self, session: Session, customer_id: str) -> dict[str, Any]:
        """Everything held on a customer, PII decrypted, as JSON-ready data."""
        row = self.active_row(session, customer_id)
        ids = [row["id"], *self._merged_family(session, row["id"])]
        identifiers = []
        for cid in ids:
            for ident in repo.identifiers_of(session, cid):
                identifiers.append(
                    {
                        "kind": ident.kind,
                        "value": self.vault.decrypt(ident.value_enc),
                        "linked_at": ident.created_at.isoformat(),
                    }
                )
        timeline: list[dict[str, Any]] = []
        for cid in ids:
            before: tuple[datetime, int] | None = None
            while True:
                page = repo.timeline_page(session, cid, 1000, before, None)
                timeline.extend(
                    {
                        "event_id": t.event_id,
                        "type": t.type,
                        "channel": t.channel,
                        "occurred_at": t.occurred_at.isoformat(),
                        "details": t.details,
                    }
                    for t in page
                )
                if len(page) < 1000:
                    break
                before = (page[-1].occurred_at, page[-1].id)
        merges = [
            {
                "merge_id": m.id,
                "survivor_id": m.survivor_id,
                "merged_id": m.merged_id,
                "status": m.status,
                "created_at": m.created_at.isoformat(),
            }
            for m in repo.merges_involving(session, ids)
        ]
        return {
            "exported_at": utcnow().isoformat(),
            "profile": self.full_view(session, row).model_dump(mode="json"),
            "merged_profiles": ids[1:],
            "identifiers": identifiers,
            "timeline": timeline,
            "merges": merges,
        }

    def _merged_family(self, session: Session, customer_id: str) -> list[str]:
        """Ids of every profile merged (directly or transitively) into ``customer_id``."""
        found: list[str] = []
        frontier = [customer_id]
        while frontier:
            nxt = []
            for cid in frontier:
                for child in repo.customers_merged_into(session, cid):
                    if child not in found and child != customer_id:
                        found.append(child)
                        nxt.append(child)
            frontier = nxt
        return found

    def erase(self, session: Session, customer_id: str) -> tuple[ErasureReceipt, bool, list[Outbound]]:
        """Delete the profile, its merged-away profiles, identifiers, timeline, memberships and merge records.

        Idempotent: erasing again answers the first receipt. The receipt holds only a keyed hash of the id.
        """
        subject_hash = self.vault.lookup_hash("erasure", customer_id)
        existing = repo.receipt_by_subject(session, subject_hash)
        if existing is not None:
            return existing, True, []
        row = self.active_row(session, customer_id, lock=True)
        ids = [row["id"], *self._merged_family(session, row["id"])]
        if customer_id not in ids:
            ids.append(customer_id)
        now = utcnow()
        deleted = {
            "timeline": repo.delete_timeline(session, ids),
            "identifiers": repo.delete_identifiers(session, ids),
            "segment_memberships": repo.delete_memberships(session, ids),
            "merges": 0,
        }
        for merge in repo.merges_involving(session, ids):
            session.delete(merge)
            deleted["merges"] += 1
        session.flush()
        deleted["profiles"] = repo.delete_customers(session, ids)
        erasure_id = f"era_{uuid.uuid4().hex[:20]}"
        receipt = ErasureReceipt(
            id=erasure_id, subject_hash=subject_hash, requested_at=now, completed_at=utcnow(), deleted=deleted
        )
        session.add(receipt)
        # Receipts for the other erased ids too, so erasing any of them later is answered idempotently.
        for other in ids:
            other_hash = self.vault.lookup_hash("erasure", other)
            if other_hash != subject_hash and repo.receipt_by_subject(session, other_hash) is None:
                session.add(
                    ErasureReceipt(
                        id=f"era_{uuid.uuid4().hex[:20]}",
                        subject_hash=other_hash,
                        requested_at=now,
                        completed_at=receipt.completed_at,
                        deleted={"see_erasure": 1},
                    )
                )
        session.flush()
        outbound: list[Outbound] = []
        for cid in ids:
            event = CloudEvent.new(
                EventTypeName.CUSTOMER_ERASED,
                CustomerErased(customer_id=cid, erasure_id=erasure_id),
                source=SOURCE,
                subject=cid,
                id=stable_event_id("erased", erasure_id, cid),
            )
            outbound.append((Topic.CUSTOMER_ERASED, event, cid))
        forget_erased_data(session)
        log.info("customer_erased", erasure_id=erasure_id, profiles=len(ids))
        return receipt, False, outbound


class _Batch:
    """One consumer batch: loads every touched profile once, applies events in memory, writes in bulk."""

    def __init__(self, service: ProfileService, session: Session) -> None:
        self.service = service
        self.vault = service.vault
        self.session = session
        self.now = utcnow()
        self.owners: dict[str, str] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        # Each loaded row as it was read: a dirty row's update writes only the columns that differ.
        self.loaded: dict[str, dict[str, Any]] = {}
        self.new_ids: set[str] = set()
        self.dirty: set[str] = set()
        self.new_identifiers: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.outbound: list[Outbound] = []
        self.trigger: dict[str, str] = {}
        self._segments: list[Segment] | None = None
        self._hashes: dict[tuple[str, str], str] = {}
        self.absent: set[str] = set()  # ids known not to exist (no query needed)

    # -- loading ------------------------------------------------------------------------------

    def _hash(self, kind: str, value: str) -> str:
        key = (kind, value)
        digest = self._hashes.get(key)
        if digest is None:
            digest = self._hashes[key] = self.vault.lookup_hash(kind, value)
        return digest

    def _canonical(self, ref: CustomerRef) -> str:
        if ref.customer_id:
            return ref.customer_id
        # Keyed, so the id does not reveal the email/phone it came from; deterministic for replays.
        return "cus_" + hashlib.sha256(self._hash("key", ref.partition_key()).encode()).hexdigest()[:24]

    def _load(self, events: Sequence[InboundEvent]) -> None:
        hashes = [self._hash(k, v) for e in events for k, v in identifiers_of(e.payload.customer)]  # type: ignore[attr-defined]
        self.owners = repo.identifier_owners(self.session, hashes)
        wanted = set(self.owners.values()) | {self._canonical(e.payload.customer) for e in events}  # type: ignore[attr-defined]
        self.rows = repo.load_customers(self.session, wanted)
        self.loaded = {customer_id: dict(row) for customer_id, row in self.rows.items()}
        self.absent = wanted - set(self.rows)

    def _row(self, customer_id: str) -> dict[str, Any] | None:
        row = self.rows.get(customer_id)
        if row is None and customer_id not in self.absent:
            row = repo.load_customers(self.session, [customer_id]).get(customer_id)
            if row is not None:
                self.rows[customer_id] = row
                self.loaded[customer_id] = dict(row)
        return row

    def _follow(self, customer_id: str) -> dict[str, Any] | None:
        row = self._row(customer_id)
        hops = 0
        while row is not None and row["status"] == "merged" and row["merged_into"] and hops < 20:
            row = self._row(row["merged_into"])
            hops += 1
        return row

    # -- interactions -------------------------------------------------------------------------

    def run_interactions(self, events: Sequence[InboundEvent]) -> None:
        self._load(events)
        for index, event in enumerate(events):
            payload: Interaction = event.payload  # type: ignore[assignment]
            idents = [
                (kind, value, self._hash(kind, value)) for kind, value in identifiers_of(payload.customer)
            ]
            owners: list[str] = []
            for _, _, digest in idents:
                owner = self.owners.get(digest)
                if owner is not None and owner not in owners:
                    owners.append(owner)
            if len(owners) > 1 and isinstance(payload, Identify):
                customer_id = self._merge_all(owners, event)
                self._load(events[index:])
                row = self.rows[customer_id]
            elif owners:
                row = self._follow(owners[0]) or self._create(owners[0], event)
            else:
                candidate = self._canonical(payload.customer)
                existing = self._follow(candidate)
                row = existing if existing is not None else self._create(candidate, event)
            customer_id = row["id"]
            for kind, value, digest in idents:
                if digest not in self.owners:
                    self.owners[digest] = customer_id
                    self.new_identifiers.append(
                        {
                            "hash": digest,
                            "kind": kind,
                            "customer_id": customer_id,
                            "value_enc": self.vault.encrypt(value),
                            "created_at": self.now,
                        }
                    )
            self._apply(row, event, payload)
            self.outbound.append(
                (Topic.INTERACTIONS_RESOLVED, resolved_json(event, customer_id), customer_id)
            )
        self._flush()

    def _create(self, customer_id: str, event: InboundEvent) -> dict[str, Any]:
        row = new_customer_row(customer_id, event.time, self.now)
        row["version"] = 0  # becomes 1 with the event that creates it
        self.rows[customer_id] = row
        self.new_ids.add(customer_id)
        return row

    def _merge_all(self, owners: list[str], event: InboundEvent) -> str:
        """Write what is pending, then merge every profile the identify event links (rare)."""
        self._flush()
        rows = [r for r in (self._follow(o) for o in owners) if r is not None]
        survivor = rows[0]
        for other in rows[1:]:
            if other["id"] == survivor["id"]:
                continue
            outcome = self.service.merge(
                self.session,
                survivor["id"],
                other["id"],
                dry_run=False,
                reason=f"identify event {event.id}",
                trigger=event.id,
            )
            self.outbound.extend(outcome.outbound)
            survivor = repo.load_customers(self.session, [outcome.result.survivor_id])[
                outcome.result.survivor_id
            ]
        self.rows = {}
        return str(survivor["id"])

    def _apply(self, row: dict[str, Any], event: InboundEvent, payload: Interaction) -> None:
        at = event.time
        kind = short_type(event.type)
        row["event_count"] += 1
        # New dicts, never changed in place: _changed() finds what to write by identity.
        counts = row["counts_by_type"]
        row["counts_by_type"] = {**counts, kind: counts.get(kind, 0) + 1}
        if payload.channel:
            channels = row["counts_by_channel"]
            row["counts_by_channel"] = {**channels, payload.channel: channels.get(payload.channel, 0) + 1}
        if row["first_seen"] is None or at < row["first_seen"]:
            row["first_seen"] = at
        if row["last_seen"] is None or at > row["last_seen"]:
            row["last_seen"] = at
        ref = payload.customer
        is_identify = isinstance(payload, Identify)
        if ref.email and (is_identify or row["email_enc"] is None):
            row["email_enc"] = self.vault.encrypt(ref.email)
        if ref.phone and (is_identify or row["phone_enc"] is None):
            row["phone_enc"] = self.vault.encrypt(ref.phone)
        details: str
        if isinstance(payload, Purchase):
            row["orders"] += 1
            row["revenue"] += payload.amount
            last = row["last_order_at"]
            if last is None or at.date() != last.date():
                row["purchase_days"] += 1
            row["first_order_at"] = _min(row["first_order_at"], at)
            row["last_order_at"] = _max(last, at)
        elif isinstance(payload, Rating):
            row["rating_count"] += 1
            row["rating_sum"] += payload.rating
        elif isinstance(payload, ConsentChanged):
            # The latest decision by event time wins (shared.consent): a late or replayed older one is kept
            # in the timeline but does not override a newer one.
            current = decision_from_profile(row["consent"].get(payload.purpose))
            if ConsentDecision(payload.granted, at).supersedes(current):
                row["consent"] = {
                    **row["consent"],
                    payload.purpose: {"granted": payload.granted, "at": at.isoformat()},
                }
        if is_identify:
            row["traits"] = {**row["traits"], **payload.traits}  # type: ignore[attr-defined]
        # Identifiers live hashed/encrypted elsewhere, never in the timeline.
        # (A field's value is in the model's __dict__; getattr() on a payload without one goes through
        # pydantic's __getattr__ and an AttributeError, for every rating and purchase.)
        text = payload.__dict__.get("text")
        if text is not None and len(text) > TEXT_LIMIT:
            trimmed = payload.model_dump(mode="json", exclude_none=True, exclude={"customer"})
            trimmed["text"] = text[:TEXT_LIMIT]
            details = json.dumps(trimmed)
        else:
            # Serialised once here (pydantic-core); the timeline stores this JSON text as it is.
            details = payload.model_dump_json(exclude_none=True, exclude={"customer"})
        self.timeline.append(
            {
                "customer_id": row["id"],
                "event_id": event.id,
                "type": event.type,
                "channel": payload.channel,
                "occurred_at": at,
                "details": details,
            }
        )
        self._touch(row, event.id)

    def _touch(self, row: dict[str, Any], event_id: str) -> None:
        if row["id"] not in self.new_ids:
            self.dirty.add(row["id"])
        self.trigger[row["id"]] = event_id

    # -- sentiment and churn signals ----------------------------------------------------------

    def run_signals(self, events: Sequence[InboundEvent]) -> None:
        self.rows = repo.load_customers(self.session, {e.payload.customer_id for e in events})  # type: ignore[attr-defined]
        self.loaded = {customer_id: dict(row) for customer_id, row in self.rows.items()}
        for event in events:
            payload = event.payload
            row = self._follow(payload.customer_id)  # type: ignore[attr-defined]
            if row is None or row["status"] != "active":
                log.info("signal_for_unknown_customer", event_id=event.id, type=event.type)
                continue
            details: dict[str, Any]
            if isinstance(payload, SentimentScored):
                row["sentiment_count"] += 1
                row["sentiment_sum"] += payload.score
                previous = row["sentiment_recent"]
                row["sentiment_recent"] = (
                    payload.score
                    if previous is None
                    else SENTIMENT_RECENT_WEIGHT * payload.score + (1 - SENTIMENT_RECENT_WEIGHT) * previous
                )
                row["sentiment_last_label"] = payload.label
                details = {
                    "label": payload.label,
                    "score": payload.score,
                    "source_event_id": payload.source_event_id,
                    "model_version": payload.model_version,
                }
            elif isinstance(payload, ChurnRiskChanged):
                row["churn_probability"] = payload.probability
                row["churn_band"] = payload.band
                row["churn_model_version"] = payload.model_version
                details = {
                    "band": payload.band,
                    "probability": payload.probability,
                    "reasons": payload.reasons,
                    "model_version": payload.model_version,
                }
            else:
                continue
            self.timeline.append(
                {
                    "customer_id": row["id"],
                    "event_id": event.id,
                    "type": event.type,
                    "channel": None,
                    "occurred_at": event.time,
                    "details": json.dumps(details),
                }
            )
            self._touch(row, event.id)
        self._flush()

    # -- writing ------------------------------------------------------------------------------

    def _changed(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row's id and the columns this batch assigned. A batch assigns new values and never
        changes one in place, so a column still holding the object it was read with is unchanged:
        fewer values to convert and, on SQLite, fewer index entries rewritten."""
        before = self.loaded.get(row["id"])
        if before is None:
            return row
        return {name: value for name, value in row.items() if name == "id" or value is not before.get(name)}

    def _flush(self) -> None:
        touched = [self.rows[c] for c in (self.new_ids | self.dirty)]
        for row in touched:
            row["updated_at"] = self.now
            row["version"] += 1
        repo.insert_customers(self.session, [self.rows[c] for c in sorted(self.new_ids)])
        repo.update_customers(self.session, [self._changed(self.rows[c]) for c in sorted(self.dirty)])
        repo.insert_identifiers(self.session, self.new_identifiers)
        repo.insert_timeline(self.session, self.timeline)
        if touched:
            if self._segments is None:
                self._segments = repo.list_segments(self.session)
            changes = self.service.reevaluate(self.session, touched, self.now, self._segments)
            if changes:
                by_customer: dict[str, list[SegmentChange]] = {}
                for change in changes:
                    by_customer.setdefault(change.customer_id, []).append(change)
                for customer_id, items in by_customer.items():
                    self.outbound.extend(self.service.segment_events(items, self.trigger[customer_id]))
        self.session.flush()
        self.new_ids = set()
        self.dirty = set()
        self.new_identifiers = []
        self.timeline = []
