"""The churn service: calibrated churn risk with reasons, fresh on every event, next-best-actions."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI

from services.churn.consumers import EVENT_TYPES, make_handler, topics
from services.churn.ml.training import load_current
from services.churn.models import Base
from services.churn.router import router
from services.churn.service import ChurnService, ModelHolder
from services.churn.settings import ChurnSettings, get_settings
from shared.app import build_app, register_readiness
from shared.auth import require_internal_key
from shared.contracts import Topic
from shared.db import unit_of_work
from shared.logging import get_logger
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


def load_rules_file(path: str) -> list[dict[str, Any]]:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    rules = data.get("rules", data) if isinstance(data, dict) else data
    if not isinstance(rules, list):
        raise ValueError(f"CRM_CHURN_RULES_FILE {path}: expected a list of rules")
    return rules


def bootstrap_model(settings: ChurnSettings) -> Any:
    """Train the from-events model on CDNOW (a sample of customers: seconds) and save it as a version."""
    from services.churn.ml.features import cdnow_histories, cutoffs_before
    from services.churn.ml.training import save_version, train_events

    histories = cdnow_histories(max_customers=settings.bootstrap_max_customers)
    end = max(a.time for h in histories.values() for a in h)
    cutoffs = cutoffs_before(end, settings.label_days, settings.snapshot_count, settings.snapshot_step_days)
    result = train_events(
        histories, cutoffs, settings.label_days, calibration=settings.calibration, source="cdnow-bootstrap"
    )
    save_version(result.model, settings.models_path())
    return result.model


def create_app(settings: ChurnSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime("churn", settings, settings.database_url)
        Base.metadata.create_all(runtime.engine)
        holder = ModelHolder()
        publisher = None
        if settings.consume_events:
            publisher = runtime.connect_kafka([*topics(settings), settings.topic(Topic.CHURN_RISK_CHANGED)])
        service = ChurnService(settings, holder, publisher)
        with unit_of_work(runtime.session_factory) as session:
            seeded = service.seed_rules(
                session, load_rules_file(settings.rules_file) if settings.rules_file else None
            )
            if seeded:
                log.info("churn_rules_seeded", rules=seeded)
        runtime.add_consumer(settings.consumer_group, topics(settings), make_handler(service), EVENT_TYPES)
        app.state.runtime = runtime
        app.state.churn = service
        register_readiness(app, "model", lambda: holder.events is not None)
        # runtime.start() registers these from the prepare thread; shared/app.py's /readyz iterates the checks
        # dict unguarded, so every key must exist before the thread starts (replacing a value is safe).
        started = threading.Event()
        register_readiness(app, "database", lambda: started.is_set())
        if runtime.publisher is not None:
            register_readiness(app, "broker", lambda: started.is_set())
        if runtime.consumers:
            register_readiness(app, "consumers", lambda: started.is_set())
        table = load_current(settings.models_path(), "table")
        if table is not None:
            holder.set(table)

        def prepare() -> None:
            # Off the event loop: load or train the model, then start consuming (scoring needs the model).
            try:
                model = load_current(settings.models_path(), "events")
                if model is None and settings.train_on_start:
                    holder.status = "training"
                    log.info("churn_bootstrap_training", customers=settings.bootstrap_max_customers)
                    model = bootstrap_model(settings)
                if model is None:
                    holder.status = "no model: run `crm churn train`"
                    return
                holder.set(model)
                log.info("churn_model_ready", version=model.version, metrics=model.metrics)
                runtime.start(app)
                started.set()
            except Exception as exc:
                holder.status, holder.error = "failed", f"{type(exc).__name__}: {exc}"
                log.exception("churn_model_failed")

        thread = threading.Thread(target=prepare, name="churn-prepare", daemon=True)
        thread.start()
        try:
            yield
        finally:
            thread.join(timeout=120)
            runtime.close()

    secret = settings.internal_api_key.get_secret_value() if settings.internal_api_key else None
    app = build_app(
        service="churn",
        title="CRM churn service",
        description="Calibrated churn risk with reasons, fresh on every event, and next-best-action rules.",
        lifespan=lifespan,
    )
    app.include_router(router, dependencies=[Depends(require_internal_key(secret))])
    return app
