"""The recsys service app: FAISS-served recommendations that learn from every interaction event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from services.recsys import repository
from services.recsys.consumers import EVENT_TYPES, GROUP, TOPICS, make_handler
from services.recsys.router import router
from services.recsys.service import RecsysService
from services.recsys.settings import RecsysSettings, get_settings
from shared.app import build_app
from shared.auth import require_internal_key
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)

TAGS = [
    {
        "name": "recommendations",
        "description": "Personalised, session and similar-item recommendations with reasons.",
    },
    {"name": "items", "description": "The item catalog: names, categories and attributes of items."},
    {"name": "models", "description": "Model versions, their offline metrics and click-through; training."},
]


def _show_model_in_readiness(app: FastAPI, service: RecsysService) -> None:
    """/readyz names the served model version (a check named ``model:<version>``)."""

    def update(version: str) -> None:
        checks = {
            name: check for name, check in app.state.readiness_checks.items() if not name.startswith("model")
        }
        checks[f"model:{version}"] = lambda: service.ready
        # Replace, never mutate: /readyz may be iterating over the old dict in another thread.
        app.state.readiness_checks = checks

    service.on_model_change = update
    update(service.model_version)


def create_app(settings: RecsysSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        # Requests already run in parallel in the thread pool: one BLAS thread per call avoids
        # oversubscription, which on a busy 2-core machine turned a 1 ms explanation matmul into 40 ms at p99.
        # (FAISS's OpenMP threads are set per search by ItemIndex: that setting is per calling thread.)
        blas_limits = threadpool_limits(limits=settings.search_threads)
        runtime = ServiceRuntime("recsys", settings, settings.database_url)
        await run_in_threadpool(repository.create_tables, runtime.engine)
        service = RecsysService(settings, runtime.session_factory)
        if settings.consume_events:
            await run_in_threadpool(runtime.connect_kafka, list(TOPICS))
            runtime.add_consumer(GROUP, list(TOPICS), make_handler(service), EVENT_TYPES)
        app.state.runtime = runtime
        app.state.recsys_service = service
        app.state.settings = settings
        runtime.start(app)
        _show_model_in_readiness(app, service)
        await run_in_threadpool(service.load)
        service.start()
        try:
            yield
        finally:
            service.stop()
            await run_in_threadpool(runtime.close)
            blas_limits.restore_original_limits()

    app = build_app(
        service="recsys",
        title="CRM recsys service",
        description="Recommendations from a denoising linear autoencoder served through FAISS inner-product "
        "search; every interaction event updates the customer's next answer.",
        lifespan=lifespan,
        openapi_tags=TAGS,
    )
    key = settings.internal_api_key.get_secret_value() if settings.internal_api_key else None
    app.include_router(router, dependencies=[Depends(require_internal_key(key))])
    return app
