"""HTTP routes of the profile service: parse, call the service, shape the response.

Every write runs in one transaction; events it causes (segment changes, merges, erasures) are published
and acknowledged by the broker before that transaction commits.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from services.profile import repository as repo
from services.profile.batch import BatchScheduler
from services.profile.models import Segment, customers_table
from services.profile.schemas import (
    BatchStatus,
    CustomerPage,
    CustomerPatch,
    CustomerProfile,
    ErasureReceiptOut,
    LookupResult,
    MembersExcluded,
    MergeRequest,
    MergeResult,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    TimelineItem,
    TimelinePage,
)
from services.profile.service import Outbound, ProfileService
from shared.auth import require_internal_key
from shared.errors import InvalidRequest


def _internal_key(request: Request) -> None:
    settings = request.app.state.settings
    expected = settings.internal_api_key.get_secret_value() if settings.internal_api_key else None
    require_internal_key(expected)(request)


router = APIRouter(dependencies=[Depends(_internal_key)])


def get_service(request: Request) -> ProfileService:
    service: ProfileService = request.app.state.profile_service
    return service


ServiceDep = Annotated[ProfileService, Depends(get_service)]


@contextmanager
def transaction(request: Request, service: ProfileService) -> Iterator[tuple[Session, list[Outbound]]]:
    """One unit of work: publish what it produced (and wait for acks), then commit; roll back on error."""
    session: Session = request.app.state.session_factory()
    outbound: list[Outbound] = []
    try:
        yield session, outbound
        session.flush()
        service.publish(outbound)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _encode_cursor(at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().rsplit("|", 1)
        return datetime.fromisoformat(at), int(row_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not one this API returned") from exc


SORTS: dict[str, Any] = {
    "last_seen": customers_table.c.last_seen,
    "first_seen": customers_table.c.first_seen,
    "revenue": customers_table.c.revenue,
    "orders": customers_table.c.orders,
    "id": customers_table.c.id,
}


# --- customers ---------------------------------------------------------------------------------


@router.get("/customers", response_model=CustomerPage, tags=["customers"])
def list_customers(
    request: Request,
    service: ServiceDep,
    segment_id: Annotated[str | None, Query(description="Only members of this segment.")] = None,
    cluster: Annotated[str | None, Query(description="RFM cluster name, e.g. champions.")] = None,
    churn_band: Annotated[Literal["low", "medium", "high"] | None, Query()] = None,
    min_revenue: Annotated[float | None, Query(ge=0, le=1e15)] = None,
    max_revenue: Annotated[float | None, Query(ge=0, le=1e15)] = None,
    min_orders: Annotated[int | None, Query(ge=0, le=1_000_000_000)] = None,
    last_seen_after: datetime | None = None,
    last_seen_before: datetime | None = None,
    sort: Literal["last_seen", "first_seen", "revenue", "orders", "id"] = "last_seen",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> CustomerPage:
    """List active customers with filters, sorted and paged."""
    table = customers_table
    filters: list[Any] = []
    if segment_id is not None:
        filters.append(table.c.id.in_(repo.member_ids_query(segment_id)))
    if cluster is not None:
        filters.append(table.c.rfm_cluster == cluster)
    if churn_band is not None:
        filters.append(table.c.churn_band == churn_band)
    if min_revenue is not None:
        filters.append(table.c.revenue >= min_revenue)
    if max_revenue is not None:
        filters.append(table.c.revenue <= max_revenue)
    if min_orders is not None:
        filters.append(table.c.orders >= min_orders)
    if last_seen_after is not None:
        filters.append(table.c.last_seen >= last_seen_after)
    if last_seen_before is not None:
        filters.append(table.c.last_seen < last_seen_before)
    column = SORTS[sort]
    with transaction(request, service) as (session, _):
        rows, total = repo.search_customers(
            session, filters, column.desc() if order == "desc" else column.asc(), limit, offset
        )
        return CustomerPage(items=[service.view(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/customers/lookup", response_model=LookupResult, tags=["customers"])
def lookup_customer(
    request: Request,
    service: ServiceDep,
    type: Annotated[str, Query(description="customer_id, anonymous_id, email, phone or ext:<system>.")],
    value: Annotated[str, Query(min_length=1, max_length=320)],
) -> LookupResult:
    """Find the canonical customer id for an identifier (matched by its keyed hash)."""
    if type not in {"customer_id", "anonymous_id", "email", "phone"} and not type.startswith("ext:"):
        raise InvalidRequest("type must be customer_id, anonymous_id, email, phone or ext:<system>")
    with transaction(request, service) as (session, _):
        return LookupResult(customer_id=service.lookup(session, type, value), matched=type)


@router.get("/customers/{customer_id}/canonical", response_model=LookupResult, tags=["customers"])
def canonical_customer(request: Request, service: ServiceDep, customer_id: str) -> LookupResult:
    """The canonical id an id names: itself, the survivor of a merge, or the profile a source system's
    ``customer_id`` was linked to. The gateway asks this before calling a service about a customer."""
    with transaction(request, service) as (session, _):
        row = service.active_row(session, customer_id)
    matched = "canonical" if row["id"] == customer_id else "resolved"
    return LookupResult(customer_id=row["id"], matched=matched)


@router.get("/customers/{customer_id}", response_model=CustomerProfile, tags=["customers"])
def get_customer(request: Request, service: ServiceDep, customer_id: str) -> CustomerProfile:
    """The customer 360; a merged-away id answers the surviving profile."""
    with transaction(request, service) as (session, _):
        return service.full_view(session, service.active_row(session, customer_id))


@router.patch("/customers/{customer_id}", response_model=CustomerProfile, tags=["customers"])
def patch_customer(
    request: Request, service: ServiceDep, customer_id: str, body: CustomerPatch
) -> CustomerProfile:
    """Change traits (null removes one), email or phone; segments are re-evaluated at once."""
    with transaction(request, service) as (session, outbound):
        row, events = service.patch(session, customer_id, body)
        outbound.extend(events)
        return service.full_view(session, row)


@router.get("/customers/{customer_id}/timeline", response_model=TimelinePage, tags=["customers"])
def customer_timeline(
    request: Request,
    service: ServiceDep,
    customer_id: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    type: Annotated[
        list[str] | None, Query(description="Only these event types, e.g. crm.purchase.v1.")
    ] = None,
) -> TimelinePage:
    """The customer's interactions, newest first, paged with a cursor."""
    before = _decode_cursor(cursor) if cursor else None
    with transaction(request, service) as (session, _):
        row = service.active_row(session, customer_id)
        entries = repo.timeline_page(session, row["id"], limit + 1, before, type)
        more = len(entries) > limit
        entries = entries[:limit]
        return TimelinePage(
            items=[
                TimelineItem(
                    event_id=e.event_id,
                    type=e.type,
                    channel=e.channel,
                    occurred_at=e.occurred_at,
                    details=e.details,
                )
                for e in entries
            ],
            next_cursor=_encode_cursor(entries[-1].occurred_at, entries[-1].id) if more and entries else None,
        )


@router.get("/customers/{customer_id}/export", tags=["privacy"])
def export_customer(request: Request, service: ServiceDep, customer_id: str) -> dict[str, Any]:
    """Everything held on the customer (profile, identifiers, timeline, merges) as JSON."""
    with transaction(request, service) as (session, _):
        return service.export(session, customer_id)


@router.delete("/customers/{customer_id}", response_model=ErasureReceiptOut, tags=["privacy"])
def erase_customer(request: Request, service: ServiceDep, customer_id: str) -> ErasureReceiptOut:
    """Erase the customer everywhere and announce it; idempotent (a repeat answers the first receipt)."""
    with transaction(request, service) as (session, outbound):
        receipt, already, events = service.erase(session, customer_id)
        outbound.extend(events)
        return ErasureReceiptOut(
            erasure_id=receipt.id,
            requested_at=receipt.requested_at,
            completed_at=receipt.completed_at,
            deleted=receipt.deleted,
            already_erased=already,
        )


# --- merges ------------------------------------------------------------------------------------


@router.post("/merges", response_model=MergeResult, tags=["merges"])
def merge_customers(request: Request, service: ServiceDep, body: MergeRequest) -> MergeResult:
    """Merge two profiles by the merge rules, or with dry_run show what would happen and change nothing."""
    first, second = body.customer_ids
    with transaction(request, service) as (session, outbound):
        outcome = service.merge(session, first, second, dry_run=body.dry_run, reason="api")
        outbound.extend(outcome.outbound)
        if body.dry_run:
            session.rollback()
        return outcome.result


@router.post("/merges/{merge_id}/undo", response_model=MergeResult, tags=["merges"])
def undo_merge(request: Request, service: ServiceDep, merge_id: str) -> MergeResult:
    """Undo a merge: both profiles, identifiers, timelines and segment memberships as before it."""
    with transaction(request, service) as (session, outbound):
        outcome = service.undo_merge(session, merge_id)
        outbound.extend(outcome.outbound)
        return outcome.result


# --- segments ----------------------------------------------------------------------------------


def _segment_out(session: Session, segment: Segment) -> SegmentOut:
    return SegmentOut(
        id=segment.id,
        name=segment.name,
        description=segment.description,
        rule=segment.rule,
        member_count=len(repo.segment_member_ids(session, segment.id)),
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )


@router.post("/segments", response_model=SegmentOut, status_code=201, tags=["segments"])
def create_segment(request: Request, service: ServiceDep, body: SegmentIn) -> SegmentOut:
    """Create a rule segment; its members are computed at once and kept current on every event."""
    with transaction(request, service) as (session, outbound):
        segment, events = service.create_segment(session, body.name, body.rule, body.description)
        outbound.extend(events)
        return _segment_out(session, segment)


@router.get("/segments", response_model=list[SegmentOut], tags=["segments"])
def list_segments(request: Request, service: ServiceDep) -> list[SegmentOut]:
    """Every segment with its member count."""
    with transaction(request, service) as (session, _):
        return [_segment_out(session, s) for s in repo.list_segments(session)]


@router.get("/segments/{segment_id}", response_model=SegmentOut, tags=["segments"])
def get_segment(request: Request, service: ServiceDep, segment_id: str) -> SegmentOut:
    """One segment."""
    with transaction(request, service) as (session, _):
        return _segment_out(session, service.get_segment(session, segment_id))


@router.patch("/segments/{segment_id}", response_model=SegmentOut, tags=["segments"])
def update_segment(request: Request, service: ServiceDep, segment_id: str, body: SegmentPatch) -> SegmentOut:
    """Rename a segment or change its rule (members are re-evaluated)."""
    with transaction(request, service) as (session, outbound):
        segment, events = service.update_segment(session, segment_id, body.name, body.rule, body.description)
        outbound.extend(events)
        return _segment_out(session, segment)


@router.delete("/segments/{segment_id}", status_code=204, tags=["segments"])
def delete_segment(request: Request, service: ServiceDep, segment_id: str) -> Response:
    """Delete a segment; every member's exit is announced."""
    with transaction(request, service) as (session, outbound):
        outbound.extend(service.delete_segment(session, segment_id))
    return Response(status_code=204)


@router.get("/segments/{segment_id}/members", response_model=CustomerPage, tags=["segments"])
def segment_members(
    request: Request,
    service: ServiceDep,
    segment_id: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    purpose: Annotated[
        Literal["operational", "marketing"],
        Query(
            description="marketing: leave out members whose marketing consent is withdrawn (and, with "
            "CRM_PROFILE_MARKETING_NEEDS_OPT_IN, those who never gave it); `excluded` says how many and why."
        ),
    ] = "operational",
) -> CustomerPage:
    """The segment's current members, paged; a marketing export leaves out who may not be marketed to."""
    with transaction(request, service) as (session, _):
        service.get_segment(session, segment_id)
        if purpose == "marketing":
            rows, total, excluded = service.marketing_members_page(
                session,
                segment_id,
                limit,
                offset,
                needs_opt_in=request.app.state.settings.marketing_needs_opt_in,
            )
            return CustomerPage(
                items=[service.view(r) for r in rows],
                total=total,
                limit=limit,
                offset=offset,
                excluded=[MembersExcluded.model_validate(e) for e in excluded],
            )
        rows, total = repo.members_page(session, segment_id, limit, offset)
        return CustomerPage(items=[service.view(r) for r in rows], total=total, limit=limit, offset=offset)


@router.post("/segments/{segment_id}/refresh", response_model=SegmentOut, tags=["segments"])
def refresh_segment(request: Request, service: ServiceDep, segment_id: str) -> SegmentOut:
    """Re-evaluate a segment over every profile now (time windows move even without events)."""
    with transaction(request, service) as (session, outbound):
        segment = service.get_segment(session, segment_id)
        outbound.extend(service.refresh_segment(session, segment))
        return _segment_out(session, segment)


# --- models --------------------------------------------------------------------------------------


@router.post("/models/fit", response_model=BatchStatus, status_code=202, tags=["customers"])
def fit_models(request: Request) -> BatchStatus:
    """Refit CLV and the RFM clusters (and refresh time-window segments) now, in the background."""
    jobs: BatchScheduler = request.app.state.batch_jobs
    return jobs.request_run()


@router.get("/models/fit", response_model=BatchStatus, tags=["customers"])
def fit_status(request: Request) -> BatchStatus:
    """Where the background fit is: the job running, steps done, the last run's versions or why it skipped."""
    jobs: BatchScheduler = request.app.state.batch_jobs
    return jobs.status


@router.get("/models", tags=["customers"])
def model_versions(request: Request, service: ServiceDep) -> dict[str, Any]:
    """The CLV and RFM-cluster models currently written on the profiles, with their parameters."""
    with transaction(request, service) as (session, _):
        out: dict[str, Any] = {}
        for kind in ("clv", "rfm_clusters"):
            run = repo.latest_run(session, kind)
            out[kind] = (
                None
                if run is None
                else {
                    "version": run.id,
                    "fitted_at": run.fitted_at,
                    "customers": run.customers,
                    "params": run.params,
                }
            )
        return out
