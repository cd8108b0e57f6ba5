"""Calls to the services behind the gateway: one pooled ``httpx.AsyncClient`` per service, per-call
timeouts, and a circuit breaker per service so a dead service costs nothing once it is known dead."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from services.gateway.metrics import BREAKER_OPEN, DOWNSTREAM_CALLS, DOWNSTREAM_SECONDS
from shared.auth import API_KEY_HEADER
from shared.logging import get_logger

log = get_logger(__name__)


class DownstreamUnavailable(Exception):
    """The service did not answer usefully: connection refused, timeout, 5xx, or its breaker is open."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> half-open after ``reset_s`` (one trial
    call at a time) -> closed on its success, open again on its failure."""

    def __init__(self, name: str, failures: int, reset_s: float) -> None:
        self.name = name
        self.threshold = failures
        self.reset_s = reset_s
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if time.monotonic() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def success(self) -> None:
        self.consecutive_failures = 0
        self._trial_running = False
        if self.opened_at is not None:
            log.info("breaker_closed", downstream=self.name)
        self.opened_at = None
        BREAKER_OPEN.labels(self.name).set(0)

    def failure(self) -> None:
        self.consecutive_failures += 1
        was_trial, self._trial_running = self._trial_running, False
        if was_trial or self.consecutive_failures >= self.threshold:
            if self.opened_at is None or was_trial:
                log.warning("breaker_opened", downstream=self.name, failures=self.consecutive_failures)
            self.opened_at = time.monotonic()
            BREAKER_OPEN.labels(self.name).set(1)

    def abandon(self) -> None:
        self._trial_running = False

    def retry_after_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_s - (time.monotonic() - self.opened_at))


@dataclass(frozen=True)
class DownstreamResponse:
    status_code: int
    body: Any
    headers: httpx.Headers


class Downstream:
    """One service behind the gateway."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout_s: float,
        max_connections: int,
        breaker: CircuitBreaker,
        internal_key: str | None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.breaker = breaker
        headers = {API_KEY_HEADER: internal_key} if internal_key else {}
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers=headers,
            transport=transport,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        route: str,
        params: Any = None,
        json: Any = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> DownstreamResponse:
        """Call the service; 2xx-4xx come back as answers, anything else raises DownstreamUnavailable."""
        if not self.breaker.allow():
            DOWNSTREAM_CALLS.labels(self.name, "breaker_open").inc()
            raise DownstreamUnavailable(self.name, "circuit breaker open")
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await self.client.request(
                method,
                path,
                params=params,
                json=json,
                timeout=httpx.Timeout(timeout_s) if timeout_s else httpx.USE_CLIENT_DEFAULT,
                headers={"X-Request-ID": request_id} if request_id else None,
            )
            if response.status_code >= 500:
                outcome = "5xx"
                self.breaker.failure()
                raise DownstreamUnavailable(self.name, f"answered {response.status_code}")
            try:
                body = response.json() if response.content else None
            except ValueError as exc:
                outcome = "bad_body"
                self.breaker.failure()
                raise DownstreamUnavailable(self.name, "answered a body that is not JSON") from exc
            outcome = "ok" if response.status_code < 400 else "4xx"
            self.breaker.success()
            return DownstreamResponse(response.status_code, body, response.headers)
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            self.breaker.failure()
            raise DownstreamUnavailable(self.name, "timed out") from exc
        except httpx.HTTPError as exc:
            outcome = "unreachable"
            self.breaker.failure()
            raise DownstreamUnavailable(self.name, f"unreachable ({type(exc).__name__})") from exc
        except BaseException:
            # Cancelled (the caller gave up): not the service's fault, but a half-open trial must end.
            self.breaker.abandon()
            raise
        finally:
            DOWNSTREAM_SECONDS.labels(self.name, route, outcome).observe(time.perf_counter() - started)
            DOWNSTREAM_CALLS.labels(self.name, outcome).inc()

    async def aclose(self) -> None:
        await self.client.aclose()
