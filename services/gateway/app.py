"""The gateway application: the one public API in front of the fleet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from services.gateway import repository
from services.gateway.console import close_console, mount_console
from services.gateway.customer_cache import INVALIDATING_TOPICS, Customer360Cache, InvalidationListener
from services.gateway.downstream import CircuitBreaker, Downstream
from services.gateway.fastpath import CachedCustomer360
from services.gateway.models import Base
from services.gateway.producer import IngestProducer
from services.gateway.router import router
from services.gateway.schemas import SimpleEvent
from services.gateway.security import GatewayKeyStore, RateLimiter
from services.gateway.service import Customer360Reader
from services.gateway.settings import GatewaySettings, get_settings
from services.gateway.support_routes import router as support_router
from services.gateway.webhooks import (
    WEBHOOK_EVENT_TYPES,
    WEBHOOK_TOPICS,
    WebhookSender,
    handle_fleet_events,
)
from shared.app import build_app
from shared.contracts import CloudEvent, Topic
from shared.db import unit_of_work
from shared.logging import configure_logging, get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)

SERVICE = "gateway"
PUBLISHED_TOPICS = (
    Topic.INTERACTIONS.value,
    Topic.RECOMMENDATION_REACTION.value,
    Topic.ACTION_REACTION.value,
)
IDEMPOTENCY_TTL = timedelta(days=1)

DESCRIPTION = """The one public API of the CRM. Every route needs an API key in `X-API-Key` with the
scope it names (`admin` holds every scope): 401 without a valid key, 403 without the scope, 429 over
the key's rate limit (see `Retry-After`). Errors have one shape: `{"error", "detail", "request_id"}`.

* `POST /v1/events` publishes events to Kafka and answers 202 only after the broker acknowledged them.
* `GET /v1/customers/{id}` is the customer 360; a part whose service is down is `null` and named
  in `degraded`. Complete answers are cached and evicted by the fleet's events about the customer.
* Webhook deliveries are signed:
  `X-CRM-Signature: sha256=hex(hmac_sha256(secret, X-CRM-Timestamp + "." + body))`.
"""

TAGS = [
    {"name": "events", "description": "Ingest customer interactions and reactions."},
    {"name": "customers", "description": "The customer 360, search, timeline, merges."},
    {"name": "segments", "description": "Rule and cluster segments."},
    {"name": "recommendations", "description": "Recommendations with reasons."},
    {"name": "sentiment", "description": "Sentiment of texts."},
    {"name": "churn", "description": "Churn risk, reasons, next-best-actions."},
    {"name": "models", "description": "The models each service serves and how well they measure."},
    {"name": "privacy", "description": "Export and erasure (scope privacy:admin)."},
    {"name": "admin", "description": "API keys (scope admin)."},
    {
        "name": "webhooks",
        "description": "Subscriptions to fleet events and their delivery log (scope admin).",
    },
]


def _open_downstreams(settings: GatewaySettings) -> dict[str, Downstream]:
    internal = settings.internal_api_key.get_secret_value() if settings.internal_api_key else None
    return {
        name: Downstream(
            name,
            url,
            timeout_s=settings.downstream_timeout_s,
            max_connections=settings.downstream_max_connections,
            breaker=CircuitBreaker(name, settings.breaker_failures, settings.breaker_reset_s),
            internal_key=internal,
        )
        for name, url in settings.downstream_urls().items()
    }


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    configure_logging(
        settings.log_level,
        json=settings.log_json if settings.log_json is not None else settings.environment != "dev",
    )
    runtime = ServiceRuntime(SERVICE, settings, settings.database_url)
    Base.metadata.create_all(runtime.engine)
    repository.add_missing_columns(runtime.engine)

    def purge() -> None:
        with unit_of_work(runtime.session_factory) as session:
            repository.purge_idempotency(session, datetime.now(UTC) - IDEMPOTENCY_TTL)

    await run_in_threadpool(purge)
    await run_in_threadpool(runtime.connect_kafka, (*PUBLISHED_TOPICS, *WEBHOOK_TOPICS, *INVALIDATING_TOPICS))
    app.state.ingest_producer = IngestProducer(
        settings.kafka,
        client_id=f"{settings.kafka.client_id}-gateway-ingest",
        message_timeout_s=settings.publish_timeout_s,
    )
    webhook_handler = partial(handle_fleet_events, needs_opt_in=settings.marketing_needs_opt_in)
    runtime.add_consumer(settings.webhook_group, WEBHOOK_TOPICS, webhook_handler, WEBHOOK_EVENT_TYPES)
    runtime.start(app)
    app.state.c360_cache = None
    listener: InvalidationListener | None = None
    if settings.c360_cache_ttl_s > 0 and settings.consume_events:
        app.state.c360_cache = Customer360Cache(
            ttl_s=settings.c360_cache_ttl_s,
            settle_s=settings.c360_cache_settle_s,
            max_entries=settings.c360_cache_max_entries,
        )
        listener = InvalidationListener(
            settings.kafka, app.state.c360_cache, client_id=f"{settings.kafka.client_id}-gateway-c360"
        ).start()
    bootstrap = settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else None
    if bootstrap is None:
        log.warning("no_bootstrap_admin_key", hint="set CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY to manage API keys")
    app.state.runtime = runtime
    app.state.api_keys = GatewayKeyStore(
        runtime.session_factory,
        bootstrap_key=bootstrap,
        cache_s=settings.key_cache_s,
        pepper=settings.api_key_pepper.get_secret_value(),
    )
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.downstreams = _open_downstreams(settings)
    app.state.c360_reader = Customer360Reader(
        app.state.downstreams,
        app.state.c360_cache,
        timeout_s=settings.c360_timeout_s,
        recommendations=settings.c360_recommendations,
    )
    sender = WebhookSender(
        runtime.session_factory,
        max_attempts=settings.webhook_max_attempts,
        backoff_s=settings.webhook_backoff_s,
        timeout_s=settings.webhook_timeout_s,
        poll_s=settings.webhook_poll_s,
        marketing_needs_opt_in=settings.marketing_needs_opt_in,
    )
    app.state.webhooks = sender
    sender_task = asyncio.create_task(sender.run(), name="webhook-sender")
    log.info("gateway_started", downstreams=settings.downstream_urls())
    try:
        yield
    finally:
        await sender.close()
        sender_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender_task
        for downstream in app.state.downstreams.values():
            await downstream.aclose()
        if listener is not None:
            await run_in_threadpool(listener.close)
        await run_in_threadpool(app.state.ingest_producer.close)
        await run_in_threadpool(runtime.close)
        await close_console(app)


def _openapi_with_event_schemas(app: FastAPI) -> Any:
    """The ingest body is read raw (for speed and per-item errors); its item schemas are added here."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        _, defs = models_json_schema(
            [(SimpleEvent, "validation"), (CloudEvent, "validation")],
            ref_template="#/components/schemas/{model}",
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    app = build_app(
        service=SERVICE,
        title="CRM gateway",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=TAGS,
    )
    app.state.settings = settings or get_settings()
    app.include_router(router)
    app.include_router(support_router)
    mount_console(app, app.state.settings.kafka)
    c360_route = next(
        r
        for r in router.routes
        if getattr(r, "path", None) == "/v1/customers/{customer_id}" and "GET" in getattr(r, "methods", ())
    )
    # Inside the fleet's request-id/metrics middleware (add_middleware would put it outside).
    app.user_middleware.append(Middleware(CachedCustomer360, route=c360_route))
    app.openapi = _openapi_with_event_schemas(app)  # type: ignore[method-assign]
    return app
