"""The console's pages: HTML for people, built only on the gateway's public ``/v1`` routes (``api.py``).

Every page is rendered on the server (Jinja2, autoescaped) and made interactive with htmx; a part whose
``/v1`` call fails says so in place and the rest of the page is shown. Reads run in parallel.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from services.gateway.console import views
from services.gateway.console.api import Answer
from services.gateway.console.live import LiveEvents
from services.gateway.console.pages import (
    Band,
    FormUser,
    User,
    get,
    nothing,
    page,
    problem_page,
    send,
    templates,
)
from services.gateway.console.session import (
    ConsoleUser,
    check_key,
    current_user,
    sign_in,
    sign_out,
    verify_csrf,
)
from shared.auth import Scope

router = APIRouter(prefix="/console", include_in_schema=False)

SEARCH_LIMIT = 20
NAME_SCAN = 500
"""Name search reads this many of the most recently seen customers (``/v1/customers`` has no text query)."""
SCATTER_POINTS = 500
SSE_POLL_S = 0.2
SSE_MAX_S = 60.0
"""A stream ends after this long and the browser reconnects (EventSource does, with Last-Event-ID), so an
open tab never holds a shutting-down gateway."""
PHONE = re.compile(r"^\+?[0-9 ()\-]{6,31}$")


def _live(request: Request) -> LiveEvents:
    live: LiveEvents = request.app.state.console_live
    return live


# -- sign-in -----------------------------------------------------------------------------------


@router.get("")
async def console_home(request: Request) -> Response:
    user = await current_user(request)
    return RedirectResponse("/console/search" if user else "/console/signin", status_code=303)


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    return page(request, None, "signin.html", error=None)


@router.post("/signin")
async def signin(
    request: Request,
    api_key: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    verify_csrf(request, csrf_token)
    record = await check_key(request, api_key.strip()) if api_key.strip() else None
    if record is None:
        refused = page(
            request,
            None,
            "signin.html",
            error="This API key is not valid or was revoked. Paste the full key (it starts with crm_).",
        )
        refused.status_code = 401
        return refused
    response = RedirectResponse("/console/search", status_code=303)
    sign_in(request, response, api_key.strip())
    return response


@router.post("/signout")
async def signout(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    verify_csrf(request, csrf_token)
    response = RedirectResponse("/console/signin", status_code=303)
    sign_out(response)
    return response


# -- search ------------------------------------------------------------------------------------

Q = Annotated[str, Query(max_length=320)]


@router.get("/search")
async def search_page(request: Request, user: User, q: Q = "") -> Response:
    results = await _search(request, user, q.strip())
    return page(request, user, "search.html", nav="search", q=q, results=results)


@router.get("/search/results")
async def search_results(request: Request, user: User, q: Q = "") -> Response:
    results = await _search(request, user, q.strip())
    return page(request, user, "_results.html", q=q, results=results)


async def _search(request: Request, user: ConsoleUser, q: str) -> views.SearchResults:
    """Recent customers for an empty query; else the customers an email, phone or id names exactly, and
    those whose name contains the text among the most recently seen."""
    if not user.can_read:
        return views.SearchResults(q, [], "This API key cannot read customers (it needs customers:read).")
    if not q:
        recent = await get(request, user, "/v1/customers", limit=SEARCH_LIMIT)
        if not recent.ok:
            return views.SearchResults(q, [], f"Customers cannot be listed: {recent.problem}.")
        return views.SearchResults(q, list(recent.body["items"]), None, heading="Recently active customers")
    lookups: list[tuple[str, str]] = []
    if "@" in q:
        lookups.append(("email", q))
    else:
        if PHONE.match(q):
            lookups.append(("phone", q))
        lookups += [("customer_id", q), ("anonymous_id", q)]
    answers = await asyncio.gather(
        *(get(request, user, "/v1/customers/lookup", type=kind, value=value) for kind, value in lookups),
        get(request, user, "/v1/customers", limit=NAME_SCAN) if "@" not in q else nothing(),
    )
    found: list[str] = []
    problems: list[str] = []
    for answer in answers[:-1]:
        if answer.ok and answer.body["customer_id"] not in found:
            found.append(answer.body["customer_id"])
        elif answer.status not in (404, 400, 422):
            problems.append(answer.problem)
    profiles = await asyncio.gather(
        *(get(request, user, f"/v1/customers/{quote(i, safe='')}") for i in found)
    )
    items = [p.body["profile"] for p in profiles if p.ok and p.body.get("profile")]
    scan = answers[-1]
    if scan.ok and isinstance(scan.body, dict):
        needle = q.casefold()
        seen = {i["id"] for i in items}
        items += [
            c
            for c in scan.body["items"]
            if c["id"] not in seen and needle in views.customer_name(c).casefold()
        ][:SEARCH_LIMIT]
    problem = f"Part of the search failed: {problems[0]}." if problems else None
    return views.SearchResults(q, items[:SEARCH_LIMIT], problem)


# -- customer 360 ------------------------------------------------------------------------------


def _customer(customer_id: str) -> str:
    return f"/v1/customers/{quote(customer_id, safe='')}"


@router.get("/customers/{customer_id}")
async def customer_page(request: Request, user: User, customer_id: str) -> Response:
    path = _customer(customer_id)
    c360, timeline = await asyncio.gather(
        get(request, user, path), get(request, user, f"{path}/timeline", limit=views.TIMELINE_PAGE)
    )
    if not c360.ok:
        return problem_page(request, user, c360, f"No customer with the id {customer_id!r}.", nav="search")
    view = views.Customer360View.of(c360.body)
    timeline_view = views.TimelineView.of(timeline, view.customer_id, "")
    return page(
        request, user, "customer.html", nav="search", c=view, timeline=timeline_view, charts=view.charts()
    )


@router.get("/customers/{customer_id}/timeline")
async def customer_timeline(
    request: Request,
    user: User,
    customer_id: str,
    type: Annotated[str, Query(max_length=100)] = "",
    cursor: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    path = f"{_customer(customer_id)}/timeline"
    answer = await get(request, user, path, limit=views.TIMELINE_PAGE, type=type, cursor=cursor)
    template = "_timeline_rows.html" if cursor else "_timeline.html"
    return page(request, user, template, timeline=views.TimelineView.of(answer, customer_id, type))


@router.post("/customers/{customer_id}/reactions")
async def record_reaction(
    request: Request,
    user: FormUser,
    customer_id: str,
    rule_id: Annotated[str, Form(max_length=100)],
    action: Annotated[str, Form(max_length=100)],
    reaction: Annotated[str, Form(max_length=20)],
) -> Response:
    body = {"customer_id": customer_id, "rule_id": rule_id, "action": action, "reaction": reaction}
    answer = await send(request, user, "POST", "/v1/actions/reactions", body)
    return page(request, user, "_reaction.html", answer=answer, reaction=reaction, action=action)


@router.get("/customers/{customer_id}/export")
async def export_customer(request: Request, user: User, customer_id: str) -> Response:
    answer = await get(request, user, f"{_customer(customer_id)}/export")
    if not answer.ok:
        return page(request, user, "error.html", problem=answer.problem, status_code=answer.status)
    filename = re.sub(r"[^A-Za-z0-9_.-]", "_", customer_id)[:100]
    return Response(
        json.dumps(answer.body, indent=2, ensure_ascii=False),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="customer-{filename}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/customers/{customer_id}/erase")
async def erase_customer(
    request: Request, user: FormUser, customer_id: str, confirm: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    if confirm.strip() != customer_id:
        message = f"Nothing was erased: type the customer's id, {customer_id}, to confirm."
        return page(request, user, "_erase_result.html", ok=False, message=message)
    answer = await send(request, user, "DELETE", _customer(customer_id))
    if not answer.ok:
        return page(request, user, "_erase_result.html", ok=False, message=f"Not erased: {answer.problem}.")
    message = f"Customer {customer_id} was erased everywhere."
    return page(request, user, "_erase_result.html", ok=True, message=message, receipt=answer.body)


# -- segments ----------------------------------------------------------------------------------

RuleRows = Annotated[list[str], Form()]


@router.get("/segments")
async def segments_page(request: Request, user: User) -> Response:
    segments, customers = await asyncio.gather(
        get(request, user, "/v1/segments"),
        get(request, user, "/v1/customers", limit=SCATTER_POINTS, sort="revenue", min_orders=1),
    )
    clusters = views.ClusterView.of(customers)
    return page(
        request,
        user,
        "segments.html",
        nav="segments",
        segments=segments,
        clusters=clusters,
        fields=views.RULE_FIELDS,
        charts={"scatter": clusters.scatter},
    )


@router.get("/segments/{segment_id}/members")
async def segment_members(
    request: Request, user: User, segment_id: str, offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0
) -> Response:
    path = f"/v1/segments/{quote(segment_id, safe='')}"
    segment, members = await asyncio.gather(
        get(request, user, path), get(request, user, f"{path}/members", limit=50, offset=offset)
    )
    context = {"segment": segment, "members": members, "offset": offset}
    return page(request, user, "segment.html", nav="segments", **context)


@router.post("/segments/preview")
async def segment_preview(
    request: Request, user: FormUser, field: RuleRows, op: RuleRows, value: RuleRows
) -> Response:
    rule = views.RuleDraft.of(field, op, value)
    count: Answer | None = None
    if rule.search_params is not None:
        count = await get(request, user, "/v1/customers", limit=1, **rule.search_params)
    return page(request, user, "_preview.html", rule=rule, count=count)


@router.post("/segments")
async def create_segment(
    request: Request,
    user: FormUser,
    name: Annotated[str, Form(max_length=200)],
    field: RuleRows,
    op: RuleRows,
    value: RuleRows,
) -> Response:
    rule = views.RuleDraft.of(field, op, value)
    if rule.problem:
        return page(request, user, "_created.html", answer=None, problem=rule.problem)
    answer = await send(request, user, "POST", "/v1/segments", {"name": name.strip(), "rule": rule.rule})
    return page(request, user, "_created.html", answer=answer, problem=None if answer.ok else answer.problem)


# -- at risk -----------------------------------------------------------------------------------


@router.get("/at-risk")
async def at_risk_page(
    request: Request,
    user: User,
    band: Band = "",
    segment: Annotated[str, Query(max_length=200)] = "",
    min_probability: Annotated[float, Query(ge=0, le=1)] = 0.5,
    offset: Annotated[int, Query(ge=0, le=1000)] = 0,
) -> Response:
    members_path = f"/v1/segments/{quote(segment, safe='')}/members"
    at_risk, segments, members = await asyncio.gather(
        get(request, user, "/v1/churn/at-risk", limit=200, min_probability=min_probability),
        get(request, user, "/v1/segments"),
        get(request, user, members_path, limit=1000) if segment else nothing(),
    )
    view = views.AtRiskView.of(at_risk, members if segment else None, band, offset)
    filters = {"band": band, "segment": segment, "min_probability": min_probability}
    return page(request, user, "at_risk.html", nav="at-risk", view=view, segments=segments, **filters)


@router.get("/at-risk/action/{customer_id}")
async def at_risk_action(request: Request, user: User, customer_id: str) -> Response:
    """One row's suggested action (the churn service's rules), loaded by the row once the list is shown."""
    answer = await get(request, user, f"{_customer(customer_id)}/churn")
    return page(request, user, "_action.html", answer=answer)


# -- live events -------------------------------------------------------------------------------


@router.get("/live")
async def live_page(request: Request, user: User) -> Response:
    live = _live(request)
    live.ensure_started()
    return page(request, user, "live.html", nav="live", recent=list(reversed(live.recent(50))))


@router.get("/live/stream")
async def live_stream(request: Request) -> Response:
    user = await current_user(request)
    if user is None or not user.can_read:
        return Response(status_code=401)
    live = _live(request)
    live.ensure_started()
    last = request.headers.get("Last-Event-ID", "")
    start = int(last) if last.isdigit() else live.last_seq
    template = templates.env.get_template("_event.html")

    async def stream() -> AsyncIterator[str]:
        seq = start
        waited = 0.0
        announced = False
        yield "retry: 1000\n\n"
        while waited < SSE_MAX_S and not await request.is_disconnected():
            if live.listening and not announced:
                announced = True
                yield f"event: status\ndata: {json.dumps(views.live_status(live))}\n\n"
            for event in live.since(seq):
                seq = event.seq
                html = template.render(e=event).replace("\n", " ")
                yield f"id: {event.seq}\ndata: {html}\n\n"
            await asyncio.sleep(SSE_POLL_S)
            waited += SSE_POLL_S

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- models ------------------------------------------------------------------------------------


@router.get("/models")
async def models_page(request: Request, user: User) -> Response:
    models, at_risk, sample, recent, sentiment = await asyncio.gather(
        get(request, user, "/v1/models"),
        get(request, user, "/v1/churn/at-risk", limit=1, min_probability=0),
        get(request, user, "/v1/customers", limit=1, min_orders=1, sort="revenue"),
        get(request, user, "/v1/customers", limit=1),
        # The version that scores texts now, in English and Chinese (each text names its model).
        send(request, user, "POST", "/v1/sentiment", {"texts": ["The console works.", "很好"]}),
    )
    recs = Answer(204)
    if recent.ok and recent.body["items"]:
        recs = await get(request, user, f"{_customer(recent.body['items'][0]['id'])}/recommendations", k=1)
    view = views.ModelsView.of(models, at_risk, sample, recs, sentiment)
    return page(request, user, "models.html", nav="models", view=view, admin_scope=Scope.ADMIN)
