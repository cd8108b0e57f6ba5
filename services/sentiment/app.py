"""The sentiment service: English and Chinese sentiment over HTTP (micro-batched) and from events."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from services.sentiment.batcher import MicroBatcher, Predict
from services.sentiment.consumers import (
    CUSTOMER_EVENT_TYPES,
    TEXT_EVENT_TYPES,
    handle_customer_events,
    make_interaction_handler,
)
from services.sentiment.models import Base
from services.sentiment.router import router
from services.sentiment.service import EnglishUpgrader, SentimentEngine, load_engine, model_workers
from services.sentiment.settings import SentimentSettings, get_settings
from shared.app import build_app, register_readiness
from shared.auth import require_internal_key
from shared.contracts import Topic
from shared.kafka import EventPublisher
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


def create_app(settings: SentimentSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime("sentiment", settings, settings.database_url)
        Base.metadata.create_all(runtime.engine)
        app.state.settings = settings
        app.state.runtime = runtime
        app.state.engine = None
        app.state.model_status = "loading"

        def engine() -> SentimentEngine:
            loaded: SentimentEngine | None = app.state.engine
            if loaded is None:  # consumers start only after the model is loaded; this cannot happen
                raise RuntimeError("sentiment model not loaded")
            return loaded

        publisher: EventPublisher | None = None
        if settings.consume_events:
            publisher = runtime.connect_kafka(
                [
                    Topic.INTERACTIONS_RESOLVED,
                    Topic.SENTIMENT_SCORED,
                    Topic.CUSTOMER_ERASED,
                    Topic.CUSTOMER_MERGED,
                ]
            )
            runtime.add_consumer(
                settings.consumer_group,
                [Topic.INTERACTIONS_RESOLVED],
                make_interaction_handler(engine, publisher),
                TEXT_EVENT_TYPES,
            )
            runtime.add_consumer(
                settings.customers_group,
                [Topic.CUSTOMER_ERASED, Topic.CUSTOMER_MERGED],
                handle_customer_events,
                CUSTOMER_EVENT_TYPES,
            )

        def start_batcher(score: Predict) -> MicroBatcher:
            started = MicroBatcher(
                score,
                max_batch_size=settings.max_batch_size,
                max_wait_ms=settings.max_wait_ms,
                workers=model_workers(settings),
            )
            started.start()
            return started

        batcher = start_batcher(
            lambda texts: engine().english_proba(texts, batch_size=settings.max_batch_size)
        )
        # Chinese texts queue separately (another model); both batchers share the engine's network slots.
        chinese_batcher = start_batcher(
            lambda texts: engine().chinese_proba(texts, batch_size=settings.max_batch_size)
        )
        app.state.batcher = batcher
        app.state.chinese_batcher = chinese_batcher
        # Not ready until prepare() has run: register every key runtime.start() will set now (it then only
        # replaces values), and publish the versioned model name by swapping in a new dict.
        for name in ("model", "database", *(("broker", "consumers") if settings.consume_events else ())):
            register_readiness(app, name, lambda: False)

        def name_served_models(loaded: SentimentEngine) -> None:
            # The model check's name carries the served versions (as recsys's does); /readyz's `info`
            # reports them as data, with their validation and held-out accuracy.
            checks = {k: v for k, v in app.state.readiness_checks.items() if not k.startswith("model")}
            checks[f"model:en={loaded.english.version};zh={loaded.chinese.version}"] = lambda: True
            app.state.readiness_checks = checks

        stopping = threading.Event()

        def prepare() -> None:
            # Off the event loop: load (or, on a first start, train) the models, then start consuming.
            try:
                loaded = load_engine(settings)
                app.state.engine = loaded
                app.state.model_status = "ready"
                app.state.readiness_info = lambda: {"models": loaded.served()}
                # A fine-tune finishing in the background (`crm sentiment train`) is served only once it
                # beats the served model on validation data; looked for every model_poll_s.
                upgrader = app.state.upgrader = EnglishUpgrader(
                    loaded, settings, on_switch=name_served_models
                )
                runtime.start(app)
                name_served_models(loaded)
            except Exception as exc:
                app.state.model_status = f"failed: {type(exc).__name__}: {exc}"
                log.exception("sentiment_model_failed")
                return
            while settings.model_poll_s and not stopping.wait(settings.model_poll_s):
                upgrader.check()

        thread = threading.Thread(target=prepare, name="sentiment-prepare", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stopping.set()
            await batcher.stop()
            await chinese_batcher.stop()
            thread.join(timeout=180)
            runtime.close()

    secret = settings.internal_api_key.get_secret_value() if settings.internal_api_key else None
    app = build_app(
        service="sentiment",
        title="CRM sentiment service",
        description="English and Chinese sentiment of texts, reviews and support messages.",
        lifespan=lifespan,
    )
    app.include_router(router, dependencies=[Depends(require_internal_key(secret))])
    return app
