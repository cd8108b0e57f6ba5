"""The support service app: triage of support messages, tickets, the intent catalog, knowledge-base replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool
from threadpoolctl import threadpool_limits

from services.support import repository
from services.support.consumers import EVENT_TYPES, GROUP, TOPICS, make_handler
from services.support.router import router
from services.support.service import SupportService
from services.support.settings import SupportSettings, get_settings
from shared.app import build_app, register_readiness
from shared.auth import require_internal_key
from shared.contracts import Topic
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)

TAGS = [
    {
        "name": "triage",
        "description": "Language, intent, entities, urgency, routing and escalation of a text.",
    },
    {"name": "tickets", "description": "Conversations per customer and channel: open, pending, resolved."},
    {"name": "suggestions", "description": "Reply suggestions from the knowledge base and agents' feedback."},
    {"name": "intents", "description": "The company's intent catalog."},
    {"name": "articles", "description": "The knowledge base."},
]


def create_app(settings: SupportSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One BLAS thread per call, as in recsys: requests and the consumer already run in parallel, and
        # a thread pool per tiny matmul oversubscribes a busy 2-core machine.
        blas_limits = threadpool_limits(limits=settings.threads)
        runtime = ServiceRuntime("support", settings, settings.database_url)
        await run_in_threadpool(repository.create_tables, runtime.engine)
        service = SupportService(settings, runtime.session_factory)
        app.state.runtime = runtime
        app.state.support_service = service
        app.state.settings = settings
        # The model loads before the consumers start: a message is never triaged without one.
        await run_in_threadpool(service.load)
        if settings.consume_events:
            publisher = await run_in_threadpool(runtime.connect_kafka, [*TOPICS, Topic.SUPPORT_TRIAGED])
            runtime.add_consumer(GROUP, list(TOPICS), make_handler(service, publisher), EVENT_TYPES)
        runtime.start(app)
        register_readiness(app, "model", lambda: service.ready)
        service.start()
        try:
            yield
        finally:
            service.stop()
            await run_in_threadpool(runtime.close)
            blas_limits.restore_original_limits()

    app = build_app(
        service="support",
        title="CRM support service",
        description="Triage of every support message (intent with abstention, entities, urgency, routing, "
        "escalation) into tickets, and reply suggestions drafted from the knowledge base.",
        lifespan=lifespan,
        openapi_tags=TAGS,
    )
    key = settings.internal_api_key.get_secret_value() if settings.internal_api_key else None
    app.include_router(router, dependencies=[Depends(require_internal_key(key))])
    return app
