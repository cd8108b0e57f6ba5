"""The gateway's client to a service: which answers count against the service's circuit breaker."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from services.gateway.downstream import CircuitBreaker, Downstream, DownstreamUnavailable
from tests.gateway.support import serving


def flaky_service() -> FastAPI:
    """An HTTP peer that fails in each of the ways a service can (the client's behaviour is the subject)."""
    app = FastAPI()

    @app.get("/crash")
    async def crash() -> PlainTextResponse:
        return PlainTextResponse("Internal Server Error", status_code=500)

    @app.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"error": "NotReady", "detail": "loading"}, status_code=503)

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    return app


def test_a_500_is_passed_on_without_opening_the_breaker_and_a_503_opens_it() -> None:
    with serving(flaky_service()) as server:

        async def scenario() -> None:
            breaker = CircuitBreaker("svc", failures=2, reset_s=60)
            downstream = Downstream(
                "svc", server.url, timeout_s=2, max_connections=4, breaker=breaker, internal_key=None
            )
            try:
                for _ in range(5):  # one client's bad requests keep crashing the service...
                    answer = await downstream.request("GET", "/crash", route="/crash")
                    assert answer.status_code == 500
                    assert answer.body is None
                assert breaker.state == "closed"  # ...which stays available to everyone else
                assert (await downstream.request("GET", "/ok", route="/ok")).body == {"ok": True}
                for _ in range(2):
                    with pytest.raises(DownstreamUnavailable, match="answered 503"):
                        await downstream.request("GET", "/unavailable", route="/unavailable")
                assert breaker.state == "open"
            finally:
                await downstream.aclose()

        asyncio.run(scenario())
