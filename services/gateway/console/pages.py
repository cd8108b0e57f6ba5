"""What every console page handler shares: the templates, the signed-in user as a dependency, the ``/v1``
calls made with that user's key, and rendering a page or fragment with the browser's CSRF token.

A handler names ``user: User`` (a page) or ``user: FormUser`` (a form post, CSRF checked); a browser without
a valid key never reaches the handler: it is sent to the sign-in page (``SignInNeeded``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.gateway.console import inbox_views, views
from services.gateway.console.api import Answer, PublicApi
from services.gateway.console.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    ConsoleUser,
    current_user,
    ensure_csrf_cookie,
    verify_csrf,
)
from shared.app import request_id_of

HERE = Path(__file__).parent
# Autoescape on for every template: a review's "<script>" is printed as text.
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
)
templates.env.filters.update(views.FILTERS)
templates.env.filters.update(inbox_views.FILTERS)
templates.env.globals.update(csrf_field=CSRF_FIELD, csrf_header=CSRF_HEADER)


class SignInNeeded(Exception):
    """The browser has no valid key in its session cookie (``to_sign_in`` answers it)."""


async def signed_in(request: Request) -> ConsoleUser:
    user = await current_user(request)
    if user is None:
        raise SignInNeeded
    return user


User = Annotated[ConsoleUser, Depends(signed_in)]
Band = Annotated[str, Query(pattern="^(|low|medium|high)$")]
"""A filter on a churn band or an urgency (empty: any)."""


async def signed_in_form(
    request: Request, user: User, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> ConsoleUser:
    """The signed-in user of a state-changing form or htmx post, whose CSRF token matches."""
    verify_csrf(request, csrf_token)
    return user


FormUser = Annotated[ConsoleUser, Depends(signed_in_form)]


async def to_sign_in(request: Request, _exc: Exception) -> Response:
    """A page asked for without a valid key: the sign-in page (htmx follows ``HX-Redirect``)."""
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": "/console/signin"})
    return RedirectResponse("/console/signin", status_code=303)


def api(request: Request) -> PublicApi:
    public: PublicApi = request.app.state.console_api
    return public


async def get(request: Request, user: ConsoleUser, path: str, **params: Any) -> Answer:
    """A ``/v1`` read with the user's key; empty parameters are left out."""
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return await api(request).get(path, user.key, params=clean or None, request_id=request_id_of(request))


async def send(request: Request, user: ConsoleUser, method: str, path: str, body: Any = None) -> Answer:
    """A ``/v1`` write (or a read with a body) with the user's key."""
    return await api(request).call(method, path, user.key, json=body, request_id=request_id_of(request))


async def nothing() -> Answer:
    """A call not made (204), where a gather wants one."""
    return Answer(204)


def page(request: Request, user: ConsoleUser | None, template: str, **context: Any) -> HTMLResponse:
    """A full page or fragment, with this browser's CSRF token in its forms (set as a cookie if new)."""
    holder = Response()
    token = ensure_csrf_cookie(request, holder)
    response = templates.TemplateResponse(
        request,
        template,
        {"user": user, "csrf": token, "nav": context.pop("nav", ""), **context},
        status_code=context.pop("status_code", 200),
    )
    for name, value in holder.headers.items():
        if name == "set-cookie":
            response.headers.append(name, value)
    response.headers["Cache-Control"] = "no-store"
    return response


def problem_page(
    request: Request, user: ConsoleUser, answer: Answer, what: str, nav: str = ""
) -> HTMLResponse:
    """The page for a read that failed: "not found" naming ``what`` on 404, else the error."""
    if answer.status == 404:
        return page(request, user, "not_found.html", nav=nav, what=what, status_code=404)
    return page(request, user, "error.html", nav=nav, problem=answer.problem, status_code=answer.status)
