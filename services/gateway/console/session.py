"""Sign-in and CSRF for the console.

The API key a user signs in with is kept in an HttpOnly, SameSite=Strict session cookie scoped to
``/console`` (gone when the browser closes; never in a URL, a page or a log). Every state-changing request
carries a CSRF token twice (double submit): in the ``crm_console_csrf`` cookie and in the form field or the
``X-CSRF-Token`` header htmx sends; both must match, and a browser's ``Origin``, when sent, must be this
site's. The key's scopes decide what a page shows.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from services.gateway.security import GatewayKeyStore
from shared.auth import ApiKeyRecord, Scope, verify_api_key
from shared.errors import CRMError, Forbidden

KEY_COOKIE = "crm_console_key"
CSRF_COOKIE = "crm_console_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/console"


class _Holds:
    """A ``ConsoleUser`` flag: whether the key holds one scope (``user.can_read`` in a template)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    def __get__(self, user: ConsoleUser, owner: type[ConsoleUser]) -> bool:
        return user.can(self.scope)


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in key: what it may see and do."""

    key: str
    record: ApiKeyRecord
    csrf: str

    can_read = _Holds(Scope.CUSTOMERS_READ)
    can_write = _Holds(Scope.CUSTOMERS_WRITE)
    can_react = _Holds(Scope.EVENTS_WRITE)
    can_privacy = _Holds(Scope.PRIVACY_ADMIN)
    can_admin = _Holds(Scope.ADMIN)

    @property
    def name(self) -> str:
        return self.record.name

    def can(self, scope: str) -> bool:
        return self.record.allows(scope)


async def check_key(request: Request, key: str) -> ApiKeyRecord | None:
    """The record of a valid, active key; None otherwise."""
    store: GatewayKeyStore = request.app.state.api_keys
    try:
        return await run_in_threadpool(verify_api_key, store, key)
    except CRMError:
        return None


def csrf_of(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE) or ""


async def current_user(request: Request) -> ConsoleUser | None:
    key = request.cookies.get(KEY_COOKIE)
    if not key:
        return None
    record = await check_key(request, key)
    if record is None:
        return None
    return ConsoleUser(key=key, record=record, csrf=csrf_of(request))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def ensure_csrf_cookie(request: Request, response: Response) -> str:
    """The CSRF token of this browser, set on the response when it has none yet."""
    token = csrf_of(request)
    if not token:
        token = secrets.token_urlsafe(32)
        response.set_cookie(
            CSRF_COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
        )
    return token


def sign_in(request: Request, response: Response, key: str) -> None:
    response.set_cookie(
        KEY_COOKIE, key, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(KEY_COOKIE, path=COOKIE_PATH)


class CsrfRefused(Forbidden):
    """A form or htmx request without the matching CSRF token, or from another site."""


def verify_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a state-changing request whose token does not match the cookie, or whose Origin is foreign."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
        raise CsrfRefused("this request comes from another site")
    expected = csrf_of(request)
    presented = submitted or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
        raise CsrfRefused("the form's CSRF token is missing or stale: reload the page and try again")
