"""The one error shape of the fleet and the domain errors that map to it.

Every HTTP error, validation errors included, answers
``{"error": "CustomerNotFound", "detail": "...", "request_id": "..."}``.
Services raise subclasses of :class:`CRMError`; they never raise ``HTTPException``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel


class ErrorResponse(BaseModel):
    """Body of every error answer."""

    error: str
    detail: Any
    request_id: str | None = None


class CRMError(Exception):
    """Base of every domain error; ``status_code`` is the HTTP status it answers with."""

    status_code: ClassVar[int] = 400
    headers: dict[str, str] | None = None

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail if detail is not None else self.__class__.__doc__
        if headers:
            self.headers = headers

    @property
    def error(self) -> str:
        return self.__class__.__name__


class NotFound(CRMError):
    """The resource does not exist."""

    status_code = 404


class Conflict(CRMError):
    """The request conflicts with the current state."""

    status_code = 409


class InvalidRequest(CRMError):
    """The request is well-formed JSON but not acceptable."""

    status_code = 422


class Unauthorized(CRMError):
    """No valid API key was given."""

    status_code = 401


class Forbidden(CRMError):
    """The API key lacks a scope this route needs."""

    status_code = 403


class RateLimited(CRMError):
    """Too many requests for this API key; retry after the time in Retry-After."""

    status_code = 429


class ServiceUnavailable(CRMError):
    """A dependency (broker, database, model) is not available right now."""

    status_code = 503


class NotReady(ServiceUnavailable):
    """The service is starting or a dependency is down."""
