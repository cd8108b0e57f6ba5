"""API keys with scopes.

A key looks like ``crm_<key_id>_<secret>``. Only a hash of it is stored (the store says which: the
gateway's is keyed with a pepper); a presented key is found by its id and its hash compared in constant
time. Routes declare scopes with :func:`require_scopes`; no key answers 401, a key without the scope
answers 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import Request
from fastapi.security import APIKeyHeader

from shared.errors import Forbidden, Unauthorized

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API key: crm_<id>_<secret>"
)


class Scope:
    EVENTS_WRITE = "events:write"
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    PRIVACY_ADMIN = "privacy:admin"
    ADMIN = "admin"

    ALL = frozenset({EVENTS_WRITE, CUSTOMERS_READ, CUSTOMERS_WRITE, PRIVACY_ADMIN, ADMIN})


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> tuple[str, str]:
    """A new ``(key_id, key)``; show the key once, store only its hash."""
    key_id = secrets.token_hex(6)
    return key_id, f"crm_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "crm" or not parts[1] or not parts[2]:
        return None
    return parts[1]


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    key_hash: str
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    active: bool = True

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def require(self, scopes: Iterable[str]) -> None:
        """Forbidden (403) unless this key holds every scope given."""
        missing = [s for s in scopes if not self.allows(s)]
        if missing:
            raise Forbidden(f"this API key lacks the scope(s): {', '.join(missing)}")


class ApiKeyStore(Protocol):
    def get(self, key_id: str) -> ApiKeyRecord | None: ...

    def hash_key(self, key: str) -> str:
        """The hash this store keeps for ``key``."""
        ...


class InMemoryKeyStore:
    """A key store held in memory (bootstrap keys, tests). The gateway keeps its keys in its database."""

    def __init__(self, records: Iterable[ApiKeyRecord] = ()) -> None:
        self._records = {r.key_id: r for r in records}

    def add(self, record: ApiKeyRecord) -> None:
        self._records[record.key_id] = record

    def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._records.get(key_id)

    def hash_key(self, key: str) -> str:
        return hash_api_key(key)


def verify_api_key(store: ApiKeyStore, presented: str | None) -> ApiKeyRecord:
    if not presented:
        raise Unauthorized(f"missing API key: send it in the {API_KEY_HEADER} header")
    key_id = key_id_of(presented)
    record = store.get(key_id) if key_id else None
    # Compare even when the id is unknown, so timing does not tell which ids exist.
    expected = record.key_hash if record else store.hash_key("crm_unknown_" + secrets.token_hex(8))
    if not hmac.compare_digest(expected, store.hash_key(presented)) or record is None or not record.active:
        raise Unauthorized("invalid or revoked API key")
    return record


def require_scopes(*scopes: str) -> Callable[[Request], ApiKeyRecord]:
    """A dependency: the caller's key, which must hold every scope given (``admin`` holds all)."""

    def dependency(request: Request) -> ApiKeyRecord:
        store: ApiKeyStore = request.app.state.api_keys
        record = verify_api_key(store, request.headers.get(API_KEY_HEADER))
        record.require(scopes)
        request.state.api_key = record
        return record

    return dependency


def require_internal_key(expected: str | None) -> Callable[[Request], None]:
    """A dependency for internal services: when a key is configured, callers must present it."""

    def dependency(request: Request) -> None:
        if expected is None:
            return
        presented = request.headers.get(API_KEY_HEADER, "")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise Unauthorized("internal API key required")

    return dependency
