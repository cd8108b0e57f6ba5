"""``build_app()``: the one FastAPI application shape of the fleet.

It adds request ids (``X-Request-ID`` in and out, bound to every log line), HTTP metrics by route
template, the one error shape for every error (validation included), ``/livez`` (no I/O),
``/readyz`` (runs the checks the lifespan registered; 503 until all pass) and ``/metrics``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import CRMError, ErrorResponse
from shared.logging import get_logger
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = get_logger(__name__)

ReadinessCheck = Callable[[], bool]

_STATUS_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "InvalidRequest",
    429: "RateLimited",
    500: "InternalError",
    503: "ServiceUnavailable",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "The request is invalid."},
}


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(
    request: Request, status_code: int, error: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=error, detail=jsonable_encoder(detail), request_id=request_id_of(request))
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


class RequestContextMiddleware:
    """Pure-ASGI request id + metrics middleware (cheaper than BaseHTTPMiddleware on hot paths)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:100]
                break
        request_id = request_id or os.urandom(16).hex()  # 32 hex digits like uuid4().hex, for less CPU
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            HTTP_LATENCY.labels(self.service, method, template).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            structlog.contextvars.unbind_contextvars("request_id")


def build_app(
    *,
    service: str,
    title: str,
    description: str = "",
    version: str = "0.1.0",
    lifespan: Any = None,
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    """The fleet's FastAPI app: probes, metrics, error shape, request ids. Routers are added by the caller."""
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        responses=ERROR_RESPONSES,
    )
    app.state.service = service
    app.state.readiness_checks = {}

    @app.exception_handler(CRMError)
    async def _crm_error(request: Request, exc: CRMError) -> JSONResponse:
        return error_response(request, exc.status_code, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg"), "type": err.get("type")}
            for err in exc.errors()
        ]
        return error_response(request, 422, "InvalidRequest", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = _STATUS_NAMES.get(exc.status_code, "HTTPError")
        return error_response(request, exc.status_code, name, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return error_response(request, 500, "InternalError", "unexpected error; see the service log")

    @app.get("/livez", tags=["probes"], include_in_schema=False)
    async def livez() -> dict[str, str]:
        """Liveness: the process answers. No I/O."""
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["probes"], include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """Readiness: database, broker and model checks registered by the lifespan."""
        checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
        results: dict[str, bool] = {}
        # A copy: start-up threads may still be registering checks while we iterate.
        for name, check in list(checks.items()):
            try:
                results[name] = bool(await run_in_threadpool(check))
            except Exception:
                results[name] = False
        if checks and all(results.values()):
            body: dict[str, Any] = {"status": "ready", "service": service, "checks": results}
            # What a service reports about itself when ready (e.g. the model it serves), as data.
            info: Callable[[], dict[str, Any]] | None = getattr(request.app.state, "readiness_info", None)
            if info is not None:
                body["info"] = info()
            return JSONResponse(body)
        detail = {"checks": results, "message": "starting" if not checks else "a dependency is not ready"}
        return error_response(request, 503, "NotReady", detail, {"Retry-After": "1"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestContextMiddleware, service=service)
    return app


def register_readiness(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    """Called by lifespans: /readyz answers 200 only when every registered check is true."""
    app.state.readiness_checks[name] = check
