"""Webhooks: fleet events fanned out to subscribers' URLs, signed, retried with backoff, logged.

The consumer (group ``crm-gateway-webhooks``) writes one delivery row per matching subscription in the
same transaction as the event ledger (an outbox: exactly once in effect); the worker sends due rows.
Signature: ``X-CRM-Signature: sha256=<hex hmac_sha256(secret, f"{X-CRM-Timestamp}.{body}")>``.

A ``marketing`` subscription never receives an event about a customer who may not be marketed to
(shared.consent: latest crm.consent_changed.v1 for ``marketing`` by event time; opt-in mode with
CRM_GATEWAY_MARKETING_NEEDS_OPT_IN); its delivery row is written ``skipped`` with the reason instead.
The gateway learns consent from the fleet's events, not by asking the profile: the same consumer reads
consent events from crm.interactions.resolved.v1 (subject = canonical id) into its own small table, so the
decision is taken in the outbox transaction itself, with no HTTP call per event and no dependency on the
profile being up (an outage would otherwise hold back every marketing delivery or let one through
unchecked). The consent event and the event it should stop arrive on different topics, so the sender
checks again just before sending: a withdrawal read in between still stops the delivery.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from services.gateway import repository
from services.gateway.ingest import resolve_type
from services.gateway.metrics import WEBHOOK_ATTEMPTS
from services.gateway.models import WebhookDelivery, WebhookSubscription
from shared.consent import MARKETING, ConsentDecision, marketing_refusal
from shared.contracts import EventTypeName, Topic
from shared.contracts.events import ConsentChanged, CustomerErased, CustomerMerged
from shared.db import unit_of_work
from shared.errors import InvalidRequest
from shared.kafka import InboundEvent
from shared.logging import get_logger

log = get_logger(__name__)

WEBHOOK_GROUP = "crm-gateway-webhooks"
WEBHOOK_TOPICS = (
    Topic.CHURN_RISK_CHANGED.value,
    Topic.SEGMENT_MEMBERSHIP_CHANGED.value,
    Topic.SENTIMENT_SCORED.value,
    Topic.CUSTOMER_MERGED.value,
    Topic.CUSTOMER_ERASED.value,
    Topic.INTERACTIONS_RESOLVED.value,  # for its consent events only
)
SUBSCRIBABLE_EVENT_TYPES = frozenset(
    {
        EventTypeName.CHURN_RISK_CHANGED.value,
        EventTypeName.SEGMENT_MEMBERSHIP_CHANGED.value,
        EventTypeName.SENTIMENT_SCORED.value,
        EventTypeName.CUSTOMER_MERGED.value,
        EventTypeName.CUSTOMER_ERASED.value,
    }
)
# What the webhook consumer reads: the subscribable events and the consent decisions it keeps.
WEBHOOK_EVENT_TYPES = SUBSCRIBABLE_EVENT_TYPES | {EventTypeName.CONSENT_CHANGED.value}
PURPOSES = ("operational", "marketing")
OPT_IN_SETTING = "CRM_GATEWAY_MARKETING_NEEDS_OPT_IN"
SIGNATURE_HEADER = "X-CRM-Signature"
TIMESTAMP_HEADER = "X-CRM-Timestamp"
DELIVERY_HEADER = "X-CRM-Delivery-Id"
EVENT_TYPE_HEADER = "X-CRM-Event-Type"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (documented; used by the tests)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def normalise_event_types(names: Sequence[str]) -> list[str]:
    types: list[str] = []
    for name in names:
        full = resolve_type(name)
        if full is None or full not in SUBSCRIBABLE_EVENT_TYPES:
            allowed = ", ".join(
                sorted(t.removeprefix("crm.").removesuffix(".v1") for t in SUBSCRIBABLE_EVENT_TYPES)
            )
            raise InvalidRequest(f"event type {name!r} cannot be subscribed to; choose from: {allowed}")
        if full not in types:
            types.append(full)
    return types


def new_subscription(
    url: str, event_types: Sequence[str], description: str | None, purpose: str = "operational"
) -> WebhookSubscription:
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose {purpose!r} is not one of: {', '.join(PURPOSES)}")
    return WebhookSubscription(
        id=uuid.uuid4().hex,
        url=url,
        event_types=normalise_event_types(event_types),
        secret="whsec_" + secrets.token_urlsafe(32),
        description=description,
        purpose=purpose,
        active=True,
        created_at=datetime.now(UTC),
    )


def marketing_refusal_of(session: Session, customer_id: str | None, *, needs_opt_in: bool) -> str | None:
    """Why an event about the customer may not go to a marketing subscription, or None when it may."""
    if customer_id is None:
        return None
    decision = repository.marketing_consent(session, customer_id)
    refusal = marketing_refusal(decision, needs_opt_in=needs_opt_in, opt_in_setting=OPT_IN_SETTING)
    return None if refusal is None else refusal.reason


def _keep_fleet_state(event: InboundEvent, session: Session) -> None:
    """What the webhook consumer remembers of an event: consent decisions, and merges and erasures of
    the customers they belong to (an erasure also removes the delivery log of earlier events)."""
    payload = event.payload
    if isinstance(payload, ConsentChanged):
        if payload.purpose != MARKETING:
            return
        if not event.subject:
            log.warning("webhook_consent_without_subject", event_id=event.id)
            return
        decision = ConsentDecision(payload.granted, event.envelope.time)
        repository.set_marketing_consent(session, event.subject, decision, event.id)
    elif isinstance(payload, CustomerErased):
        repository.forget_customer_deliveries(session, payload.customer_id)
        repository.erase_marketing_consent(session, payload.customer_id)
    elif isinstance(payload, CustomerMerged):
        if payload.undone:
            repository.unmerge_marketing_consent(session, payload.survivor_id, payload.merged_id)
        else:
            repository.merge_marketing_consent(session, payload.survivor_id, payload.merged_id)


def handle_fleet_events(
    events: Sequence[InboundEvent], session: Session, *, needs_opt_in: bool = False
) -> None:
    """Consumer handler: one delivery row per (event, matching subscription), pending, or skipped with the
    reason for a marketing subscription and a customer who may not be marketed to. Events are taken in
    order, so a withdrawal earlier in the batch already counts for the events after it."""
    subscriptions = repository.list_subscriptions(session)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event.payload, CustomerErased):
            # Rows written so far go in first, so the erasure removes the skipped ones about this customer.
            repository.add_deliveries(session, rows)
            rows = []
        _keep_fleet_state(event, session)
        if event.type not in SUBSCRIBABLE_EVENT_TYPES:
            continue
        matching = [s for s in subscriptions if event.type in s.event_types]
        if not matching:
            continue
        body = event.envelope.model_dump(mode="json", exclude_none=True)
        customer_id = getattr(event.payload, "customer_id", None) or event.subject
        customer = str(customer_id) if customer_id else None
        refusal: str | None = None
        # An erasure notice is not marketing: a marketing receiver needs it most, to delete its copy.
        if event.type != EventTypeName.CUSTOMER_ERASED.value and any(
            s.purpose == "marketing" for s in matching
        ):
            refusal = marketing_refusal_of(session, customer, needs_opt_in=needs_opt_in)
        for subscription in matching:
            skipped = refusal is not None and subscription.purpose == "marketing"
            rows.append(
                {
                    "id": uuid.uuid4().hex,
                    "subscription_id": subscription.id,
                    "event_id": event.id,
                    "event_type": event.type,
                    "customer_id": customer,
                    "payload": body,
                    "status": "skipped" if skipped else "pending",
                    "last_error": refusal if skipped else None,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    repository.add_deliveries(session, rows)


class WebhookSender:
    """Sends due deliveries; runs as a task in the gateway's lifespan."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        max_attempts: int,
        backoff_s: float,
        timeout_s: float,
        poll_s: float,
        marketing_needs_opt_in: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._sessions = session_factory
        self.marketing_needs_opt_in = marketing_needs_opt_in
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, transport=transport)
        self._stop = asyncio.Event()

    def _claim(self, limit: int = 50) -> list[tuple[str, str, str, str, dict[str, Any], int]]:
        """Due deliveries, leased (next attempt pushed out) so a slow send is not picked up twice. A
        marketing delivery whose customer withdrew consent since it was queued is skipped instead."""
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=self.timeout_s + 5)
        with unit_of_work(self._sessions) as session:
            due = repository.due_deliveries(session, now, limit)
            claimed = []
            for delivery, subscription in due:
                if (
                    subscription.purpose == "marketing"
                    and delivery.event_type != EventTypeName.CUSTOMER_ERASED
                ):
                    refusal = marketing_refusal_of(
                        session, delivery.customer_id, needs_opt_in=self.marketing_needs_opt_in
                    )
                    if refusal is not None:
                        repository.skip_pending_delivery(session, delivery.id, refusal)
                        continue
                repository.record_attempt(session, delivery.id, {"next_attempt_at": lease})
                claimed.append(
                    (
                        delivery.id,
                        subscription.url,
                        subscription.secret,
                        delivery.event_type,
                        delivery.payload,
                        delivery.attempts,
                    )
                )
            return claimed

    def _record(self, delivery_id: str, attempts: int, status_code: int | None, error: str | None) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"attempts": attempts, "last_status_code": status_code, "last_error": error}
        if error is None:
            values |= {"status": "delivered", "delivered_at": now}
        elif attempts >= self.max_attempts:
            values |= {"status": "failed"}
        else:
            delay = min(3600.0, self.backoff_s * 2 ** (attempts - 1))
            values |= {"next_attempt_at": now + timedelta(seconds=delay)}
        with unit_of_work(self._sessions) as session:
            repository.record_attempt(session, delivery_id, values)

    async def _send(self, item: tuple[str, str, str, str, dict[str, Any], int]) -> None:
        delivery_id, url, secret, event_type, payload, attempts = item
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: delivery_id,
            EVENT_TYPE_HEADER: event_type,
        }
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"answered {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        WEBHOOK_ATTEMPTS.labels("ok" if error is None else "failed").inc()
        await run_in_threadpool(self._record, delivery_id, attempts + 1, status_code, error)

    async def run_once(self) -> int:
        claimed = await run_in_threadpool(self._claim)
        if claimed:
            await asyncio.gather(*(self._send(item) for item in claimed))
        return len(claimed)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("webhook_worker_error")
                sent = 0
            if not sent:
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=self.poll_s)
                except TimeoutError:
                    pass

    async def close(self) -> None:
        self._stop.set()
        await self._client.aclose()


def delivery_out(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": repository.utc(delivery.next_attempt_at),
        "created_at": repository.utc(delivery.created_at),
        "delivered_at": repository.utc(delivery.delivered_at) if delivery.delivered_at else None,
    }
