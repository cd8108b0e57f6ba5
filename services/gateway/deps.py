"""FastAPI dependencies of the gateway: the caller's key with its scopes and rate limit, and app state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from services.gateway.security import GatewayKeyStore, RateLimiter
from shared.auth import API_KEY_HEADER, ApiKeyRecord, api_key_header, key_id_of, verify_api_key


def require(*scopes: str) -> Callable[..., Awaitable[ApiKeyRecord]]:
    """The caller's key: 401 without a valid one, 429 over its rate limit, 403 without every scope."""

    async def dependency(
        request: Request, _key: Annotated[str | None, Depends(api_key_header)]
    ) -> ApiKeyRecord:
        store: GatewayKeyStore = request.app.state.api_keys
        limiter: RateLimiter = request.app.state.rate_limiter
        presented = request.headers.get(API_KEY_HEADER)
        key_id = key_id_of(presented) if presented else None
        if key_id is not None and not store.is_cached(key_id):
            # Database lookups (cache misses) run off the event loop.
            record = await run_in_threadpool(verify_api_key, store, presented)
        else:
            record = verify_api_key(store, presented)
        limiter.take(record.key_id, store.rate_limit_of(record.key_id))
        record.require(scopes)
        request.state.api_key = record
        return record

    return dependency
