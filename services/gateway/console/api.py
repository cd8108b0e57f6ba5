"""The console's only way to the fleet: the gateway's own public ``/v1`` routes, called with the signed-in
user's key.

The calls go through the whole gateway application in process (``httpx.ASGITransport``): the same
middleware, key check, scopes, rate limit, cache and error shape as any other client's request over
HTTP, without a loopback socket or the need to know the port the gateway listens on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp

from shared.auth import API_KEY_HEADER

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    """One ``/v1`` answer: its status and JSON body, or why there is none."""

    status: int
    body: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def problem(self) -> str:
        """What went wrong, in words (the error shape's ``detail`` when there is one)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("detail"), str):
            return str(self.body["detail"])
        return f"the gateway answered {self.status}"

    @property
    def unavailable(self) -> bool:
        """The service behind the route is down or failed (the part says so; the rest of the page works)."""
        return self.status in (502, 503, 504)


class PublicApi:
    """An HTTP client of ``/v1`` bound to the running gateway application."""

    def __init__(self, app: ASGIApp) -> None:
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway.internal",
            timeout=TIMEOUT_S,
        )

    async def call(
        self,
        method: str,
        path: str,
        key: str,
        *,
        params: Any = None,
        json: Any = None,
        request_id: str | None = None,
    ) -> Answer:
        headers = {API_KEY_HEADER: key}
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            response = await self._client.request(method, path, params=params, json=json, headers=headers)
        except httpx.HTTPError:
            return Answer(503, {"detail": "the gateway did not answer"})
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        return Answer(response.status_code, body)

    async def get(self, path: str, key: str, **kwargs: Any) -> Answer:
        return await self.call("GET", path, key, **kwargs)

    async def aclose(self) -> None:
        await self._client.aclose()
