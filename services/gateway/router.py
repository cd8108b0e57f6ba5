"""The public /v1 API: HTTP only; the logic lives in ingest.py, service.py, security.py and webhooks.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from services.gateway import repository
from services.gateway.customer_cache import Customer360Cache
from services.gateway.deps import require
from services.gateway.downstream import Downstream, DownstreamUnavailable
from services.gateway.ingest import ParsedBatch, parse_batch
from services.gateway.metrics import EVENTS_ACCEPTED, EVENTS_REJECTED, INGEST_UNAVAILABLE
from services.gateway.models import IdempotencyRecord
from services.gateway.producer import IngestProducer, PublishFailed
from services.gateway.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    Customer360,
    FleetModels,
    IngestResponse,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookOut,
)
from services.gateway.security import GatewayKeyStore
from services.gateway.service import Customer360Reader, canonical_customer_id, fleet_models, segment_path
from services.gateway.settings import GatewaySettings
from services.gateway.webhooks import delivery_out, new_subscription
from shared.app import request_id_of
from shared.auth import ApiKeyRecord, Scope
from shared.contracts.http.churn import AtRiskResponse, ChurnScore, ReactionIn, ReactionOut
from shared.contracts.http.profile import (
    CustomerPage,
    CustomerPatch,
    CustomerProfile,
    ErasureReceiptOut,
    LookupResult,
    MergeRequest,
    MergeResult,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    TimelinePage,
)
from shared.contracts.http.recsys import ItemOut, RecommendationsOut, SessionRequest
from shared.contracts.http.sentiment import CustomerSentiment, SentimentRequest, SentimentResponse
from shared.db import unit_of_work
from shared.errors import Conflict, CRMError, ErrorResponse, InvalidRequest, NotFound, ServiceUnavailable
from shared.logging import get_logger

log = get_logger(__name__)


class DownstreamFailed(CRMError):
    """A service failed on this request (it answered 500): a bug, reported, not an outage."""

    status_code = 502


class PayloadTooLarge(CRMError):
    """The request body is larger than the gateway accepts."""

    status_code = 413


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _err("No valid API key."),
    403: _err("The API key lacks a scope this route needs."),
    429: _err("Rate limit exceeded; see Retry-After."),
}
PROXY_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: _err("The service refused the request."),
    404: _err("Not found."),
    409: _err("Conflicts with the current state."),
    502: _err("The service behind this route failed on this request."),
    503: _err("The service behind this route is unavailable; see Retry-After."),
}

# Bounds of numeric query parameters: beyond them a database integer overflows; no real query needs more.
MAX_COUNT = 1_000_000_000
MAX_AMOUNT = 1e15

CustomerId = Annotated[str, Path(min_length=1, max_length=200, examples=["c-42"])]
ResourceId = Annotated[str, Path(min_length=1, max_length=200)]
ReadKey = Annotated[ApiKeyRecord, Depends(require(Scope.CUSTOMERS_READ))]
WriteKey = Annotated[ApiKeyRecord, Depends(require(Scope.CUSTOMERS_WRITE))]
EventsKey = Annotated[ApiKeyRecord, Depends(require(Scope.EVENTS_WRITE))]
PrivacyKey = Annotated[ApiKeyRecord, Depends(require(Scope.PRIVACY_ADMIN))]
AdminKey = Annotated[ApiKeyRecord, Depends(require(Scope.ADMIN))]

router = APIRouter(prefix="/v1")


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def body_json(body: BaseModel) -> dict[str, Any]:
    """A validated request body as the service takes it: only the fields the caller sent."""
    return body.model_dump(mode="json", exclude_unset=True)


async def forward(
    request: Request, service: str, method: str, path: str, *, params: Any = None, json_body: Any = None
) -> Response:
    """Pass a call to a service and its answer back (status and body); 503 when it is down."""
    downstream: Downstream = request.app.state.downstreams[service]
    route = request.scope.get("route")
    try:
        answer = await downstream.request(
            method,
            path,
            route=getattr(route, "path", path),
            params=params,
            json=json_body,
            request_id=request_id_of(request),
        )
    except DownstreamUnavailable as exc:
        raise _unavailable(request, service, exc) from exc
    if answer.status_code >= 500:
        log.error("downstream_failed", downstream=service, status=answer.status_code, path=path)
        raise DownstreamFailed(f"the {service} service failed on this request ({answer.status_code})")
    if answer.status_code == 204 or answer.body is None:
        return Response(status_code=answer.status_code)
    return JSONResponse(answer.body, status_code=answer.status_code)


CANONICAL_HEADER = "X-CRM-Customer-Id"


async def canonical_id(request: Request, customer_id: str) -> str:
    """The canonical customer an id names (see ``service.canonical_customer_id``); 503 if unknowable."""
    settings = _settings(request)
    try:
        return await canonical_customer_id(
            request.app.state.downstreams,
            customer_id,
            timeout_s=settings.downstream_timeout_s,
            request_id=request_id_of(request),
        )
    except DownstreamUnavailable as exc:
        raise _unavailable(request, "profile", exc) from exc


def _unavailable(request: Request, service: str, exc: DownstreamUnavailable) -> ServiceUnavailable:
    downstream: Downstream = request.app.state.downstreams[service]
    retry = max(1, round(downstream.breaker.retry_after_s())) if downstream.breaker.opened_at else 1
    return ServiceUnavailable(
        f"the {service} service is unavailable ({exc.reason})", headers={"Retry-After": str(retry)}
    )


async def forward_for_customer(
    request: Request, customer_id: str, service: str, path_template: str, *, params: Any = None
) -> Response:
    """Resolve the customer, then forward ``path_template.format(id=<canonical id>)``; the answer names the
    canonical customer in ``X-CRM-Customer-Id`` (and in its ``customer_id``)."""
    canonical = await canonical_id(request, customer_id)
    response = await forward(
        request, service, "GET", path_template.format(id=segment_path(canonical)), params=params
    )
    response.headers[CANONICAL_HEADER] = canonical
    return response


# -- ingest ------------------------------------------------------------------------------------

_EVENT_ITEM = {
    "oneOf": [
        {"$ref": "#/components/schemas/SimpleEvent"},
        {"$ref": "#/components/schemas/CloudEvent"},
    ]
}
INGEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"anyOf": [_EVENT_ITEM, {"type": "array", "items": _EVENT_ITEM, "minItems": 1}]},
                "examples": {
                    "simple": {
                        "summary": "One purchase in the simple form",
                        "value": {
                            "type": "purchase",
                            "customer": {"email": "ada@example.com"},
                            "order_id": "o-1001",
                            "amount": 42.5,
                            "currency": "EUR",
                            "items": [{"item_id": "sku-1", "quantity": 1, "price": 42.5}],
                        },
                    },
                    "batch": {
                        "summary": "A batch mixing both forms",
                        "value": [
                            {
                                "type": "product_view",
                                "customer": {"anonymous_id": "dev-9"},
                                "item_id": "sku-1",
                            },
                            {
                                "specversion": "1.0",
                                "id": "shop-evt-77",
                                "source": "/shop",
                                "type": "crm.review.v1",
                                "data": {"customer": {"customer_id": "c-42"}, "text": "Great!", "stars": 5},
                            },
                        ],
                    },
                },
            }
        },
    }
}


@router.post(
    "/events",
    tags=["events"],
    status_code=202,
    response_model=IngestResponse,
    responses={
        **AUTH_ERRORS,
        409: _err("The Idempotency-Key was used before with a different body."),
        413: _err("The body is too large."),
        503: _err("The broker did not acknowledge in time: nothing was accepted; retry after Retry-After."),
    },
    openapi_extra=INGEST_BODY,
)
async def ingest_events(
    request: Request,
    key: EventsKey,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="Makes retries safe: the same key and body get the first answer again.",
        ),
    ] = None,
) -> Response:
    """Publish one event or a batch (CloudEvents or the simple form); 202 once the broker acked them."""
    settings = _settings(request)
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge(f"body of {len(body)} bytes exceeds {settings.max_body_bytes}")
    sessions = request.app.state.runtime.session_factory
    request_hash = hashlib.sha256(body).hexdigest() if idempotency_key else ""
    if idempotency_key:
        stored = await run_in_threadpool(_stored_answer, sessions, key.key_id, idempotency_key)
        if stored is not None:
            return _replay(stored, request_hash)
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"body is not JSON: {exc}") from exc
    except RecursionError as exc:
        # The parser's recursion guard: a client error, answered like any other (no traceback logged).
        raise InvalidRequest("body nests too deeply to be an event or a batch of events") from exc
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise InvalidRequest("the batch is empty")
    if len(items) > settings.max_batch_size:
        raise PayloadTooLarge(f"{len(items)} events in one request; at most {settings.max_batch_size}")
    id_seed = f"{key.key_id}/{idempotency_key}" if idempotency_key else None
    timeout_s = settings.publish_timeout_s
    producer: IngestProducer = request.app.state.ingest_producer
    loop = asyncio.get_running_loop()
    source = f"/gateway/{key.key_id}"

    def parse_and_produce() -> tuple[ParsedBatch, asyncio.Future[None]]:
        parsed = parse_batch(items, source=source, id_seed=id_seed)
        return parsed, producer.produce_batch(parsed.records(), loop, timeout_s)

    try:
        # Validation and serialisation run in a worker thread; the acks are awaited on the loop. If the
        # broker hangs, the request gives up after the timeout and the client is told 503.
        with anyio.fail_after(timeout_s):
            parsed, acknowledged = await anyio.to_thread.run_sync(parse_and_produce, abandon_on_cancel=True)
            await acknowledged
    except (TimeoutError, PublishFailed) as exc:
        INGEST_UNAVAILABLE.inc()
        log.warning("ingest_unavailable", error=type(exc).__name__, detail=str(exc), events=len(items))
        raise ServiceUnavailable(
            "the event broker did not acknowledge the events in time; nothing was accepted, retry later "
            "(with the same Idempotency-Key or event ids, retries are applied once)",
            headers={"Retry-After": "5"},
        ) from exc
    EVENTS_REJECTED.inc(len(parsed.errors))
    errors = [{"index": e.index, "error": e.error, "detail": e.detail} for e in parsed.errors]
    if not parsed.events:
        raise InvalidRequest(errors)
    for event_type, count in Counter(e.type for e in parsed.events).items():
        EVENTS_ACCEPTED.labels(event_type).inc(count)
    answer = IngestResponse.model_validate(
        {"accepted": len(parsed.events), "ids": [e.id for e in parsed.events], "errors": errors}
    )
    content = answer.model_dump_json().encode()
    if idempotency_key:
        record = IdempotencyRecord(
            key_id=key.key_id,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            status_code=202,
            body=content,
            created_at=datetime.now(UTC),
        )
        stored = await run_in_threadpool(_store_answer, sessions, record)
        return _replay(stored, request_hash) if stored is not record else _json(content, 202)
    return _json(content, 202)


def _json(content: bytes, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return Response(content, status_code=status_code, media_type="application/json", headers=headers)


def _stored_answer(sessions: Any, key_id: str, idempotency_key: str) -> IdempotencyRecord | None:
    with unit_of_work(sessions) as session:
        return repository.get_idempotency(session, key_id, idempotency_key)


def _store_answer(sessions: Any, record: IdempotencyRecord) -> IdempotencyRecord:
    with unit_of_work(sessions) as session:
        return repository.save_idempotency(session, record)


def _replay(stored: IdempotencyRecord, request_hash: str) -> Response:
    if stored.request_hash != request_hash:
        raise Conflict("this Idempotency-Key was used with a different body; use a new key for a new request")
    return _json(stored.body, stored.status_code, {"Idempotent-Replayed": "true"})


# -- customers ---------------------------------------------------------------------------------


@router.get("/customers", tags=["customers"], response_model=CustomerPage, responses=PROXY_ERRORS)
async def search_customers(
    request: Request,
    _key: ReadKey,
    segment_id: Annotated[
        str | None, Query(max_length=200, description="Only members of this segment.")
    ] = None,
    cluster: Annotated[str | None, Query(max_length=100, description="RFM cluster, e.g. champions.")] = None,
    churn_band: Annotated[Literal["low", "medium", "high"] | None, Query()] = None,
    min_revenue: Annotated[float | None, Query(ge=0, le=MAX_AMOUNT)] = None,
    max_revenue: Annotated[float | None, Query(ge=0, le=MAX_AMOUNT)] = None,
    min_orders: Annotated[int | None, Query(ge=0, le=MAX_COUNT)] = None,
    sort: Literal["last_seen", "first_seen", "revenue", "orders", "id"] = "last_seen",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_COUNT)] = 0,
) -> Any:
    """Search customers with filters (segment, cluster, churn band, revenue, orders), sorted and paged."""
    return await forward(request, "profile", "GET", "/customers", params=request.query_params.multi_items())


@router.get("/customers/lookup", tags=["customers"], response_model=LookupResult, responses=PROXY_ERRORS)
async def lookup_customer(
    request: Request,
    _key: ReadKey,
    type: Annotated[str, Query(min_length=1, max_length=50, examples=["email"])],
    value: Annotated[str, Query(min_length=1, max_length=320, examples=["ada@example.com"])],
) -> Any:
    """Find a customer by an identifier (email, phone, anonymous id, external id)."""
    return await forward(
        request, "profile", "GET", "/customers/lookup", params={"type": type, "value": value}
    )


@router.get(
    "/customers/{customer_id}",
    tags=["customers"],
    response_model=Customer360,
    responses={**AUTH_ERRORS, 404: _err("The profile service does not know this customer.")},
)
async def get_customer_360(request: Request, customer_id: CustomerId, _key: ReadKey) -> Response:
    """The customer 360: profile, identities, segments, CLV, recommendations, sentiment, churn, action."""
    reader: Customer360Reader = request.app.state.c360_reader
    return _json(await reader.read(customer_id, request_id_of(request)), 200)


def _forget(request: Request, *customer_ids: str) -> None:
    """The gateway's own writes evict at once (the fleet's events about them follow)."""
    cache: Customer360Cache | None = request.app.state.c360_cache
    if cache is not None:
        cache.evict(customer_ids)


@router.patch(
    "/customers/{customer_id}", tags=["customers"], response_model=CustomerProfile, responses=PROXY_ERRORS
)
async def update_customer(
    request: Request, customer_id: CustomerId, body: CustomerPatch, _key: WriteKey
) -> Any:
    """Update a customer's traits (null removes one), email or phone."""
    _forget(request, customer_id)
    try:
        return await forward(
            request, "profile", "PATCH", f"/customers/{segment_path(customer_id)}", json_body=body_json(body)
        )
    finally:
        _forget(request, customer_id)


@router.get(
    "/customers/{customer_id}/timeline",
    tags=["customers"],
    response_model=TimelinePage,
    responses=PROXY_ERRORS,
)
async def customer_timeline(
    request: Request,
    customer_id: CustomerId,
    _key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Any:
    """A customer's interactions, newest first, paginated."""
    return await forward(
        request,
        "profile",
        "GET",
        f"/customers/{segment_path(customer_id)}/timeline",
        params=request.query_params.multi_items(),
    )


@router.get(
    "/customers/{customer_id}/recommendations",
    tags=["recommendations"],
    response_model=RecommendationsOut,
    responses=PROXY_ERRORS,
)
async def customer_recommendations(
    request: Request,
    customer_id: CustomerId,
    _key: ReadKey,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    exclude_interacted: Annotated[bool, Query(description="Leave out items already interacted with.")] = True,
) -> Any:
    """Top-k recommendations for a customer, each with the items that explain it."""
    return await forward_for_customer(
        request,
        customer_id,
        "recsys",
        "/recommendations/{id}",
        params={"k": k, "exclude_interacted": str(exclude_interacted).lower()},
    )


@router.get(
    "/customers/{customer_id}/sentiment",
    tags=["sentiment"],
    response_model=CustomerSentiment,
    responses=PROXY_ERRORS,
)
async def customer_sentiment(
    request: Request, customer_id: CustomerId, _key: ReadKey, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> Any:
    """A customer's scored reviews and support messages with their mean score."""
    return await forward_for_customer(
        request, customer_id, "sentiment", "/customers/{id}/sentiment", params={"limit": limit}
    )


@router.get(
    "/customers/{customer_id}/churn", tags=["churn"], response_model=ChurnScore, responses=PROXY_ERRORS
)
async def customer_churn(request: Request, customer_id: CustomerId, _key: ReadKey) -> Any:
    """Churn probability, band, reasons, trend and next-best-action of a customer."""
    return await forward_for_customer(request, customer_id, "churn", "/churn/{id}")


@router.get("/customers/{customer_id}/export", tags=["privacy"], responses=PROXY_ERRORS)
async def export_customer(request: Request, customer_id: CustomerId, _key: PrivacyKey) -> Any:
    """Everything held on a customer, as JSON (right of access)."""
    return await forward(request, "profile", "GET", f"/customers/{segment_path(customer_id)}/export")


@router.delete(
    "/customers/{customer_id}", tags=["privacy"], response_model=ErasureReceiptOut, responses=PROXY_ERRORS
)
async def erase_customer(request: Request, customer_id: CustomerId, _key: PrivacyKey) -> Any:
    """Erase a customer everywhere (right to erasure); idempotent, returns a receipt."""
    _forget(request, customer_id)
    try:
        return await forward(request, "profile", "DELETE", f"/customers/{segment_path(customer_id)}")
    finally:
        _forget(request, customer_id)


@router.post("/merges", tags=["customers"], response_model=MergeResult, responses=PROXY_ERRORS)
async def merge_customers(
    request: Request,
    _key: WriteKey,
    body: Annotated[MergeRequest, Body(examples=[{"customer_ids": ["c-1", "c-2"], "dry_run": True}])],
) -> Any:
    """Merge two customer profiles (``dry_run`` shows the result without changing anything)."""
    _forget(request, *body.customer_ids)
    try:
        return await forward(request, "profile", "POST", "/merges", json_body=body_json(body))
    finally:
        _forget(request, *body.customer_ids)


@router.post(
    "/merges/{merge_id}/undo", tags=["customers"], response_model=MergeResult, responses=PROXY_ERRORS
)
async def undo_merge(request: Request, merge_id: ResourceId, _key: WriteKey) -> Any:
    """Undo a merge: both profiles are restored."""
    try:
        return await forward(request, "profile", "POST", f"/merges/{segment_path(merge_id)}/undo")
    finally:
        cache: Customer360Cache | None = request.app.state.c360_cache
        if cache is not None:
            cache.clear()  # the two customers are named by the merge event that follows


# -- segments ----------------------------------------------------------------------------------


@router.get("/segments", tags=["segments"], response_model=list[SegmentOut], responses=PROXY_ERRORS)
async def list_segments(request: Request, _key: ReadKey) -> Any:
    """Every segment (rules and clusters)."""
    return await forward(request, "profile", "GET", "/segments")


@router.post(
    "/segments", tags=["segments"], status_code=201, response_model=SegmentOut, responses=PROXY_ERRORS
)
async def create_segment(
    request: Request,
    _key: WriteKey,
    body: Annotated[
        SegmentIn,
        Body(examples=[{"name": "big spenders", "rule": {"field": "revenue", "op": ">=", "value": 500}}]),
    ],
) -> Any:
    """Create a rule segment."""
    return await forward(request, "profile", "POST", "/segments", json_body=body_json(body))


@router.get("/segments/{segment_id}", tags=["segments"], response_model=SegmentOut, responses=PROXY_ERRORS)
async def get_segment(request: Request, segment_id: ResourceId, _key: ReadKey) -> Any:
    """One segment."""
    return await forward(request, "profile", "GET", f"/segments/{segment_path(segment_id)}")


@router.patch("/segments/{segment_id}", tags=["segments"], response_model=SegmentOut, responses=PROXY_ERRORS)
async def update_segment(request: Request, segment_id: ResourceId, body: SegmentPatch, _key: WriteKey) -> Any:
    """Change a segment's name, description or rule."""
    return await forward(
        request, "profile", "PATCH", f"/segments/{segment_path(segment_id)}", json_body=body_json(body)
    )


@router.delete("/segments/{segment_id}", tags=["segments"], status_code=204, responses=PROXY_ERRORS)
async def delete_segment(request: Request, segment_id: ResourceId, _key: WriteKey) -> Response:
    """Delete a segment."""
    return await forward(request, "profile", "DELETE", f"/segments/{segment_path(segment_id)}")


@router.get(
    "/segments/{segment_id}/members", tags=["segments"], response_model=CustomerPage, responses=PROXY_ERRORS
)
async def segment_members(
    request: Request,
    segment_id: ResourceId,
    _key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_COUNT)] = 0,
    purpose: Annotated[
        Literal["operational", "marketing"],
        Query(
            description="marketing: an export for marketing, without the members whose marketing consent is "
            "withdrawn; `excluded` says how many were left out and why."
        ),
    ] = "operational",
) -> Any:
    """Customers in a segment, paginated; purpose=marketing leaves out who may not be marketed to."""
    return await forward(
        request,
        "profile",
        "GET",
        f"/segments/{segment_path(segment_id)}/members",
        params=request.query_params.multi_items(),
    )


# -- recommendations, sentiment, churn ---------------------------------------------------------


@router.post(
    "/recommendations/session",
    tags=["recommendations"],
    response_model=RecommendationsOut,
    responses=PROXY_ERRORS,
)
async def session_recommendations(
    request: Request,
    _key: ReadKey,
    body: Annotated[SessionRequest, Body(examples=[{"item_ids": ["movie-50", "movie-181"], "k": 10}])],
) -> Any:
    """Recommendations for an anonymous visitor from the items of their session."""
    return await forward(request, "recsys", "POST", "/recommendations/session", json_body=body_json(body))


@router.get("/items/{item_id}", tags=["recommendations"], response_model=ItemOut, responses=PROXY_ERRORS)
async def get_item(request: Request, item_id: ResourceId, _key: ReadKey) -> Any:
    """An item's catalog entry: name, categories, attributes, and whether the recommender knows it."""
    return await forward(request, "recsys", "GET", f"/items/{segment_path(item_id)}")


@router.get(
    "/items/{item_id}/similar",
    tags=["recommendations"],
    response_model=RecommendationsOut,
    responses=PROXY_ERRORS,
)
async def similar_items(
    request: Request, item_id: ResourceId, _key: ReadKey, k: Annotated[int, Query(ge=1, le=100)] = 10
) -> Any:
    """Items similar to one item."""
    return await forward(request, "recsys", "GET", f"/items/{segment_path(item_id)}/similar", params={"k": k})


@router.post("/sentiment", tags=["sentiment"], response_model=SentimentResponse, responses=PROXY_ERRORS)
async def analyse_sentiment(
    request: Request,
    _key: ReadKey,
    body: Annotated[SentimentRequest, Body(examples=[{"texts": ["Love it!", "快递太慢了"]}])],
) -> Any:
    """Sentiment of texts (English or Chinese): label, score, language, model version per text."""
    return await forward(request, "sentiment", "POST", "/sentiment", json_body=body_json(body))


@router.get("/models", tags=["models"], response_model=FleetModels, responses=AUTH_ERRORS)
async def models_in_service(request: Request, _key: ReadKey) -> FleetModels:
    """The models every service serves: versions, offline metrics, click-through, held-out accuracy."""
    return await fleet_models(
        request.app.state.downstreams,
        timeout_s=_settings(request).downstream_timeout_s,
        request_id=request_id_of(request),
    )


@router.get("/churn/at-risk", tags=["churn"], response_model=AtRiskResponse, responses=PROXY_ERRORS)
async def at_risk_customers(
    request: Request,
    _key: ReadKey,
    min_probability: Annotated[float, Query(ge=0, le=1)] = 0.5,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Any:
    """Customers most at risk, ranked by value at risk."""
    return await forward(
        request, "churn", "GET", "/churn/at-risk", params={"min_probability": min_probability, "limit": limit}
    )


@router.post(
    "/actions/reactions", tags=["churn"], status_code=201, response_model=ReactionOut, responses=PROXY_ERRORS
)
async def action_reaction(
    request: Request,
    _key: EventsKey,
    body: Annotated[
        ReactionIn,
        Body(
            examples=[
                {"customer_id": "c-42", "action": "retention_offer", "rule_id": "r1", "reaction": "accepted"}
            ]
        ),
    ],
) -> Any:
    """Record a customer's reaction to a next-best-action (for the canonical customer the id names)."""
    canonical = await canonical_id(request, body.customer_id)
    reaction = body.model_copy(update={"customer_id": canonical})
    response = await forward(request, "churn", "POST", "/actions/reactions", json_body=body_json(reaction))
    response.headers[CANONICAL_HEADER] = canonical
    return response


# -- admin: API keys ---------------------------------------------------------------------------


def _key_out(row: Any) -> dict[str, Any]:
    return {
        "key_id": row.key_id,
        "name": row.name,
        "scopes": list(row.scopes),
        "rate_limit_per_s": row.rate_limit_per_s,
        "active": row.active,
        "created_at": repository.utc(row.created_at),
        "revoked_at": repository.utc(row.revoked_at) if row.revoked_at else None,
    }


@router.post(
    "/admin/keys",
    tags=["admin"],
    status_code=201,
    response_model=ApiKeyCreated,
    responses={**AUTH_ERRORS},
)
async def create_key(request: Request, body: ApiKeyCreate, _key: AdminKey) -> dict[str, Any]:
    """Create an API key; the key itself is in this answer only."""
    store: GatewayKeyStore = request.app.state.api_keys
    row, key = await run_in_threadpool(store.create, body.name, body.scopes, body.rate_limit_per_s)
    log.info("api_key_created", key_id=row.key_id, scopes=row.scopes)
    return {**_key_out(row), "key": key}


@router.get("/admin/keys", tags=["admin"], response_model=list[ApiKeyOut], responses={**AUTH_ERRORS})
async def list_keys(
    request: Request, _key: AdminKey, include_revoked: Annotated[bool, Query()] = False
) -> list[dict[str, Any]]:
    """API keys (never the keys themselves)."""
    store: GatewayKeyStore = request.app.state.api_keys
    rows = await run_in_threadpool(store.list, include_revoked)
    return [_key_out(r) for r in rows]


@router.delete(
    "/admin/keys/{key_id}",
    tags=["admin"],
    response_model=ApiKeyOut,
    responses={**AUTH_ERRORS, 404: _err("No such key.")},
)
async def revoke_key(request: Request, key_id: ResourceId, _key: AdminKey) -> dict[str, Any]:
    """Revoke an API key; it answers 401 from now on."""
    store: GatewayKeyStore = request.app.state.api_keys
    row = await run_in_threadpool(store.revoke, key_id)
    if row is None:
        raise NotFound(f"no API key {key_id!r}")
    log.info("api_key_revoked", key_id=key_id)
    return _key_out(row)


# -- webhooks ----------------------------------------------------------------------------------


def _webhook_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "event_types": list(row.event_types),
        "description": row.description,
        "purpose": row.purpose,
        "active": row.active,
        "created_at": repository.utc(row.created_at),
    }


@router.post(
    "/webhooks", tags=["webhooks"], status_code=201, response_model=WebhookCreated, responses={**AUTH_ERRORS}
)
async def create_webhook(request: Request, body: WebhookCreate, _key: AdminKey) -> dict[str, Any]:
    """Subscribe a URL to fleet events (e.g. churn_risk_changed); the signing secret is shown once. A
    marketing subscription gets nothing about customers whose marketing consent is withdrawn."""
    subscription = new_subscription(str(body.url), body.event_types, body.description, body.purpose)

    def save() -> None:
        with unit_of_work(request.app.state.runtime.session_factory) as session:
            repository.add_subscription(session, subscription)

    await run_in_threadpool(save)
    return {**_webhook_out(subscription), "secret": subscription.secret}


@router.get("/webhooks", tags=["webhooks"], response_model=list[WebhookOut], responses={**AUTH_ERRORS})
async def list_webhooks(request: Request, _key: AdminKey) -> list[dict[str, Any]]:
    """Active webhook subscriptions."""

    def load() -> list[dict[str, Any]]:
        with unit_of_work(request.app.state.runtime.session_factory) as session:
            return [_webhook_out(s) for s in repository.list_subscriptions(session)]

    return await run_in_threadpool(load)


@router.delete(
    "/webhooks/{subscription_id}",
    tags=["webhooks"],
    status_code=204,
    responses={**AUTH_ERRORS, 404: _err("No such subscription.")},
)
async def delete_webhook(request: Request, subscription_id: ResourceId, _key: AdminKey) -> Response:
    """Delete a subscription; its pending deliveries are dropped."""

    def remove() -> bool:
        with unit_of_work(request.app.state.runtime.session_factory) as session:
            return repository.delete_subscription(session, subscription_id)

    if not await run_in_threadpool(remove):
        raise NotFound(f"no webhook subscription {subscription_id!r}")
    return Response(status_code=204)


@router.get(
    "/webhooks/{subscription_id}/deliveries",
    tags=["webhooks"],
    response_model=list[WebhookDeliveryOut],
    responses={**AUTH_ERRORS, 404: _err("No such subscription.")},
)
async def webhook_deliveries(
    request: Request,
    subscription_id: ResourceId,
    _key: AdminKey,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed|skipped)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_COUNT)] = 0,
) -> list[dict[str, Any]]:
    """The delivery log of a subscription, newest first: attempts, last status, errors, why one was skipped."""

    def load() -> list[dict[str, Any]] | None:
        with unit_of_work(request.app.state.runtime.session_factory) as session:
            if repository.get_subscription(session, subscription_id) is None:
                return None
            rows = repository.list_deliveries(
                session, subscription_id, status=status, limit=limit, offset=offset
            )
            return [delivery_out(d) for d in rows]

    result = await run_in_threadpool(load)
    if result is None:
        raise NotFound(f"no webhook subscription {subscription_id!r}")
    return result
