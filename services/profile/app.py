"""The profile service app: customer 360, identity resolution, segments, CLV, privacy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.profile.batch import BatchScheduler
from services.profile.consumers import (
    INTERACTION_EVENT_TYPES,
    INTERACTIONS_GROUP,
    PUBLISHED_TOPICS,
    SIGNAL_TOPICS,
    SIGNAL_TYPES,
    SIGNALS_GROUP,
    interactions_handler,
    signals_handler,
)
from services.profile.db import migrate
from services.profile.pii import PiiVault
from services.profile.router import router
from services.profile.service import ProfileService
from services.profile.settings import ProfileSettings, get_settings
from shared.app import build_app, register_readiness
from shared.contracts import Topic
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)

TAGS = [
    {"name": "customers", "description": "Customer profiles, timelines and identifier lookup."},
    {"name": "merges", "description": "Merging two profiles (with dry run) and undoing a merge."},
    {"name": "segments", "description": "Rule segments over profile fields and their members."},
    {"name": "privacy", "description": "Export of everything held on a customer, and erasure."},
]


def create_app(settings: ProfileSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.uses_dev_pii_key:
            log.warning(
                "profile_dev_pii_key", detail="CRM_PROFILE_PII_KEY is not set; using the development key"
            )
        # The profile applies a batch with a fixed number of statements: bigger polls amortise them.
        tuned = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(update={"max_poll_records": settings.max_poll_records})
            }
        )
        runtime = ServiceRuntime("profile", tuned, settings.database_url)
        await run_in_threadpool(migrate, runtime.engine)
        publisher = await run_in_threadpool(
            runtime.connect_kafka, [Topic.INTERACTIONS, *SIGNAL_TOPICS, *PUBLISHED_TOPICS]
        )
        service = ProfileService(PiiVault(settings.pii_key.get_secret_value()), publisher)
        runtime.add_consumer(
            INTERACTIONS_GROUP, [Topic.INTERACTIONS], interactions_handler(service), INTERACTION_EVENT_TYPES
        )
        runtime.add_consumer(SIGNALS_GROUP, list(SIGNAL_TOPICS), signals_handler(service), SIGNAL_TYPES)
        app.state.runtime = runtime
        app.state.profile_service = service
        app.state.session_factory = runtime.session_factory
        app.state.settings = settings
        runtime.start(app)
        register_readiness(app, "migrations", lambda: True)
        jobs = BatchScheduler(runtime.session_factory, settings, service)
        if settings.batch_interval_s > 0:
            jobs.start()
        app.state.batch_jobs = jobs
        try:
            yield
        finally:
            jobs.stop()
            await run_in_threadpool(runtime.close)

    app = build_app(
        service="profile",
        title="CRM profile service",
        description="The customer 360 built from events: identities, timeline, aggregates, RFM, CLV, "
        "segments and privacy (export, erasure).",
        lifespan=lifespan,
        openapi_tags=TAGS,
    )
    app.include_router(router)
    return app
