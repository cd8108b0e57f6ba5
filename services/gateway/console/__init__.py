"""The web console at ``/console``: pages for people, built on the gateway's public ``/v1`` API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from services.gateway.console.api import PublicApi
from services.gateway.console.inbox import router as inbox_router
from services.gateway.console.live import LiveEvents
from services.gateway.console.pages import SignInNeeded, to_sign_in
from services.gateway.console.router import router
from shared.settings import KafkaSettings

STATIC = Path(__file__).parent / "static"


def mount_console(app: FastAPI, kafka: KafkaSettings) -> None:
    """Serve the console's pages and static files from ``app``; its ``/v1`` calls go through ``app``."""
    app.include_router(router)
    app.include_router(inbox_router)
    app.add_exception_handler(SignInNeeded, to_sign_in)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.state.console_api = PublicApi(app)
    app.state.console_live = LiveEvents(kafka, client_id=f"{kafka.client_id}-gateway-console")


async def close_console(app: FastAPI) -> None:
    """Stop the live-events thread and the ``/v1`` client (the gateway's lifespan calls this last)."""
    live: LiveEvents | None = getattr(app.state, "console_live", None)
    if live is not None:
        await run_in_threadpool(live.close)
    api: PublicApi | None = getattr(app.state, "console_api", None)
    if api is not None:
        await api.aclose()
