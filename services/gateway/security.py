"""Who may call the gateway: API keys kept hashed in the gateway's database, scopes, per-key rate limits.

A key is stored as a keyed hash, ``h1$`` + base64url(HMAC-SHA256(pepper, sha256(key))), with the pepper
(``CRM_GATEWAY_API_KEY_PEPPER``) kept outside the database: a copy of the table alone cannot confirm a
guessed key. Hashing the key's SHA-256 rather than the key lets rows written before the pepper (plain
SHA-256 hex) be upgraded in place when the store opens, without knowing the keys.

Key lookups are cached for ``key_cache_s`` so the hot path does no I/O; a revocation made through this
process takes effect at once, one made through another replica within ``key_cache_s``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.gateway import repository
from services.gateway.models import ApiKey
from shared.auth import ApiKeyRecord, Scope, generate_api_key, hash_api_key, key_id_of
from shared.db import unit_of_work
from shared.errors import InvalidRequest, RateLimited
from shared.logging import get_logger

log = get_logger(__name__)

KEYED_HASH_PREFIX = "h1$"


def keyed_hash(sha256_hex: str, pepper: bytes) -> str:
    """The stored form of a key whose SHA-256 (hex) is given."""
    digest = hmac.new(pepper, sha256_hex.encode(), hashlib.sha256).digest()
    return KEYED_HASH_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_keyed_hash(stored: str) -> bool:
    return stored.startswith(KEYED_HASH_PREFIX)


@dataclass
class _Cached:
    record: ApiKeyRecord | None
    rate_limit_per_s: float | None
    expires: float


class GatewayKeyStore:
    """An :class:`shared.auth.ApiKeyStore` over the gateway's table plus the bootstrap admin key."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        bootstrap_key: str | None,
        cache_s: float,
        pepper: str,
    ) -> None:
        self._sessions = session_factory
        self._pepper = pepper.encode()
        self._cache_s = cache_s
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._bootstrap: ApiKeyRecord | None = None
        if bootstrap_key:
            key_id = key_id_of(bootstrap_key)
            assert key_id is not None  # the settings validator checked the format
            self._bootstrap = ApiKeyRecord(
                key_id, self.hash_key(bootstrap_key), "bootstrap", frozenset({Scope.ADMIN})
            )
        self.upgrade_stored_hashes()

    def hash_key(self, key: str) -> str:
        """What is stored for ``key`` (and what a presented key is compared against)."""
        return keyed_hash(hash_api_key(key), self._pepper)

    def upgrade_stored_hashes(self) -> int:
        """Re-hash rows still holding a plain SHA-256 (written before keyed hashes) under the pepper."""
        with unit_of_work(self._sessions) as session:
            rows = session.scalars(select(ApiKey).where(ApiKey.key_hash.not_like(f"{KEYED_HASH_PREFIX}%")))
            upgraded = 0
            for row in rows:
                row.key_hash = keyed_hash(row.key_hash, self._pepper)
                upgraded += 1
        if upgraded:
            log.info("api_key_hashes_upgraded", keys=upgraded)
        return upgraded

    def get(self, key_id: str) -> ApiKeyRecord | None:
        if self._bootstrap is not None and key_id == self._bootstrap.key_id:
            return self._bootstrap
        return self._lookup(key_id).record

    def rate_limit_of(self, key_id: str) -> float | None:
        """The key's own rate limit when it has one (None: the gateway default)."""
        if self._bootstrap is not None and key_id == self._bootstrap.key_id:
            return None
        return self._lookup(key_id).rate_limit_per_s

    def _lookup(self, key_id: str) -> _Cached:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached.expires > now:
            return cached
        with unit_of_work(self._sessions) as session:
            row = repository.get_key(session, key_id)
            if row is not None and not is_keyed_hash(row.key_hash):
                # Written by an older gateway since this one started (a rolling upgrade).
                row.key_hash = keyed_hash(row.key_hash, self._pepper)
            entry = _Cached(
                _record(row) if row is not None else None,
                row.rate_limit_per_s if row is not None else None,
                now + self._cache_s,
            )
        with self._lock:
            if len(self._cache) > 100_000:  # unknown ids must not grow the cache without bound
                self._cache.clear()
            self._cache[key_id] = entry
        return entry

    def is_cached(self, key_id: str) -> bool:
        """True when :meth:`get` answers without touching the database."""
        if self._bootstrap is not None and key_id == self._bootstrap.key_id:
            return True
        cached = self._cache.get(key_id)
        return cached is not None and cached.expires > time.monotonic()

    def forget(self, key_id: str) -> None:
        self._cache.pop(key_id, None)

    # -- management --------------------------------------------------------------------------

    def create(self, name: str, scopes: list[str], rate_limit_per_s: float | None) -> tuple[ApiKey, str]:
        unknown = sorted(set(scopes) - Scope.ALL)
        if unknown:
            raise InvalidRequest(
                f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(sorted(Scope.ALL))}"
            )
        key_id, key = generate_api_key()
        row = ApiKey(
            key_id=key_id,
            key_hash=self.hash_key(key),
            name=name,
            scopes=sorted(set(scopes)),
            rate_limit_per_s=rate_limit_per_s,
            active=True,
            created_at=datetime.now(UTC),
        )
        with unit_of_work(self._sessions) as session:
            repository.add_key(session, row)
        self.forget(key_id)
        return row, key

    def list(self, include_revoked: bool) -> list[ApiKey]:
        with unit_of_work(self._sessions) as session:
            return list(repository.list_keys(session, include_revoked=include_revoked))

    def revoke(self, key_id: str) -> ApiKey | None:
        with unit_of_work(self._sessions) as session:
            row = repository.revoke_key(session, key_id, datetime.now(UTC))
        self.forget(key_id)
        return row


def _record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(row.key_id, row.key_hash, row.name, frozenset(row.scopes), row.active)


class RateLimiter:
    """A token bucket per API key, in process memory (one gateway replica's view)."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, rate_per_s: float | None = None, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens or raise :class:`RateLimited` with the seconds until they are there."""
        rate = rate_per_s or self.rate_per_s
        burst = max(self.burst, rate) if rate_per_s else self.burst
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens < cost:
                self._buckets[key_id] = (tokens, now)
                wait = (cost - tokens) / rate
                raise RateLimited(
                    f"rate limit of {rate:g} requests/s for this API key exceeded; retry in {wait:.2f}s",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            self._buckets[key_id] = (tokens - cost, now)
