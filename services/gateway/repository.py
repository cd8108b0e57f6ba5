"""All SQL of the gateway."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, inspect, or_, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from services.gateway.models import (
    ApiKey,
    IdempotencyRecord,
    MarketingConsent,
    WebhookDelivery,
    WebhookSubscription,
)
from shared.consent import ConsentDecision


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Columns added after a table was first created: create_all() makes missing tables, never missing columns.
ADDED_COLUMNS = (("gateway_webhook_subscriptions", "purpose", "VARCHAR(16) NOT NULL DEFAULT 'operational'"),)


def add_missing_columns(engine: Engine) -> None:
    """Bring a gateway database made by an older version up to date (run after create_all)."""
    for table, column, ddl in ADDED_COLUMNS:
        if column in {c["name"] for c in inspect(engine).get_columns(table)}:
            continue
        try:
            with engine.begin() as connection:
                connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
        except DBAPIError:
            # Another replica starting at the same time added it first.
            if column not in {c["name"] for c in inspect(engine).get_columns(table)}:
                raise


# -- API keys ----------------------------------------------------------------------------------


def get_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def add_key(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()


def list_keys(session: Session, *, include_revoked: bool) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if not include_revoked:
        query = query.where(ApiKey.active.is_(True))
    return session.scalars(query).all()


def revoke_key(session: Session, key_id: str, now: datetime) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is not None and key.active:
        key.active = False
        key.revoked_at = now
        session.flush()
    return key


# -- idempotency -------------------------------------------------------------------------------


def get_idempotency(session: Session, key_id: str, idempotency_key: str) -> IdempotencyRecord | None:
    return session.get(IdempotencyRecord, (key_id, idempotency_key))


def save_idempotency(session: Session, record: IdempotencyRecord) -> IdempotencyRecord:
    """Store the answer; if a concurrent retry stored one first, that one wins and is returned."""
    try:
        with session.begin_nested():
            session.add(record)
        return record
    except IntegrityError:
        existing = get_idempotency(session, record.key_id, record.idempotency_key)
        assert existing is not None
        return existing


def purge_idempotency(session: Session, older_than: datetime) -> int:
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)


# -- webhooks ----------------------------------------------------------------------------------


def add_subscription(session: Session, subscription: WebhookSubscription) -> None:
    session.add(subscription)
    session.flush()


def get_subscription(session: Session, subscription_id: str) -> WebhookSubscription | None:
    return session.get(WebhookSubscription, subscription_id)


def list_subscriptions(session: Session) -> Sequence[WebhookSubscription]:
    return session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.active.is_(True))
        .order_by(WebhookSubscription.created_at)
    ).all()


def delete_subscription(session: Session, subscription_id: str) -> bool:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None or not subscription.active:
        return False
    subscription.active = False
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error="subscription deleted")
    )
    session.flush()
    return True


def add_deliveries(session: Session, deliveries: Sequence[dict[str, Any]]) -> None:
    if deliveries:
        session.add_all(WebhookDelivery(**d) for d in deliveries)
        session.flush()


def forget_customer_deliveries(session: Session, customer_id: str) -> int:
    """Erasure: the delivery log of a customer's past events goes (pending ones are still sent)."""
    result = session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.customer_id == customer_id, WebhookDelivery.status != "pending"
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def due_deliveries(
    session: Session, now: datetime, limit: int
) -> Sequence[tuple[WebhookDelivery, WebhookSubscription]]:
    rows = session.execute(
        select(WebhookDelivery, WebhookSubscription)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.created_at)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def record_attempt(session: Session, delivery_id: str, values: dict[str, Any]) -> None:
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))


def list_deliveries(
    session: Session, subscription_id: str, *, status: str | None, limit: int, offset: int
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit).offset(offset)
    return session.scalars(query).all()


def skip_pending_delivery(session: Session, delivery_id: str, reason: str) -> None:
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
        .values(status="skipped", last_error=reason)
    )


# -- marketing consent -------------------------------------------------------------------------


def set_marketing_consent(
    session: Session, customer_id: str, decision: ConsentDecision, event_id: str
) -> None:
    """Record a decision unless a later one (by event time) is already known for that customer id."""
    row = session.get(MarketingConsent, customer_id)
    if row is None:
        session.add(
            MarketingConsent(
                origin_customer_id=customer_id,
                customer_id=customer_id,
                granted=decision.granted,
                decided_at=decision.at,
                event_id=event_id,
            )
        )
        session.flush()
    elif decision.supersedes(ConsentDecision(row.granted, utc(row.decided_at))):
        row.granted, row.decided_at, row.event_id = decision.granted, decision.at, event_id


def marketing_consent(session: Session, customer_id: str) -> ConsentDecision | None:
    """The latest decision of the customer or of a profile merged into them."""
    rows = session.execute(
        select(MarketingConsent.granted, MarketingConsent.decided_at).where(
            MarketingConsent.customer_id == customer_id
        )
    ).all()
    decisions = [ConsentDecision(bool(granted), utc(at)) for granted, at in rows]
    return max(decisions, key=lambda d: d.at) if decisions else None


def merge_marketing_consent(session: Session, survivor_id: str, merged_id: str) -> None:
    session.execute(
        update(MarketingConsent)
        .where(MarketingConsent.customer_id == merged_id)
        .values(customer_id=survivor_id)
    )


def unmerge_marketing_consent(session: Session, survivor_id: str, merged_id: str) -> None:
    session.execute(
        update(MarketingConsent)
        .where(MarketingConsent.customer_id == survivor_id, MarketingConsent.origin_customer_id == merged_id)
        .values(customer_id=merged_id)
    )


def erase_marketing_consent(session: Session, customer_id: str) -> None:
    session.execute(
        delete(MarketingConsent).where(
            or_(
                MarketingConsent.customer_id == customer_id,
                MarketingConsent.origin_customer_id == customer_id,
            )
        )
    )
