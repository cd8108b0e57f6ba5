"""What the profile service answers (and takes) over HTTP: profiles, pages, timeline, segments, merges, erasure receipts.

The service answers with these models and the gateway reads with them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Aggregates(BaseModel):
    event_count: int = 0
    counts_by_type: dict[str, int] = Field(default_factory=dict, examples=[{"purchase": 3, "rating": 12}])
    counts_by_channel: dict[str, int] = Field(default_factory=dict, examples=[{"web": 10, "store": 5}])
    orders: int = 0
    revenue: float = 0.0
    average_order_value: float | None = None
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    rating_count: int = 0
    average_rating: float | None = None


class Rfm(BaseModel):
    recency_days: float | None = Field(
        default=None, description="Days since the last order, against the wall clock (the fleet's one clock)."
    )
    frequency: int = Field(default=0, description="Orders placed.")
    monetary: float = Field(default=0.0, description="Revenue to date.")
    scores: str | None = Field(
        default=None, description="R, F, M quintile scores (1-5) from the last clustering."
    )
    cluster: str | None = Field(default=None, examples=["champions", "loyal", "at risk", "hibernating"])
    reason: str | None = Field(
        default=None,
        description="Why `recency_days`, `scores` or `cluster` is null; absent when all are set.",
        examples=["no purchases yet"],
    )


class Sentiment(BaseModel):
    count: int = 0
    average: float | None = Field(default=None, description="Mean probability of positive over all texts.")
    recent: float | None = Field(
        default=None, description="Exponentially weighted recent probability of positive."
    )
    trend: Literal["improving", "declining", "stable"] | None = None
    last_label: str | None = None


class ChurnRisk(BaseModel):
    """The churn band the churn service last announced, kept for search and segments. The churn service
    owns the probability, its reasons and the next-best-action (``GET /churn/{id}``, the 360's ``churn``)."""

    band: str | None = None
    model_version: str | None = None


class Clv(BaseModel):
    p_alive: float | None = Field(
        default=None, description="BG/NBD probability that the customer is still active."
    )
    expected_purchases: float | None = Field(
        default=None, description="Expected purchases within horizon_days."
    )
    expected_value: float | None = Field(default=None, description="Expected revenue within horizon_days.")
    horizon_days: int | None = None
    model_version: str | None = None
    reason: str | None = Field(
        default=None,
        description="Why the CLV fields are null; absent when they are set.",
        examples=["no purchases yet"],
    )


class CustomerProfile(BaseModel):
    """The customer 360."""

    id: str = Field(description="The canonical customer id (the `subject` of resolved events).")
    status: Literal["active", "merged"] = "active"
    merged_into: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    traits: dict[str, Any] = Field(default_factory=dict)
    email: str | None = None
    phone: str | None = None
    identifier_kinds: list[str] = Field(default_factory=list, description="Kinds of identifiers linked.")
    aggregates: Aggregates
    rfm: Rfm
    sentiment: Sentiment
    churn: ChurnRisk
    clv: Clv
    consent: dict[str, Any] = Field(default_factory=dict, examples=[{"marketing": {"granted": True}}])
    segments: list[str] = Field(default_factory=list, description="Names of the segments the customer is in.")
    version: int = Field(description="Increases with every change to the profile.")
    updated_at: datetime


class BatchJobResult(BaseModel):
    job: Literal["segments", "clv", "rfm_clusters"]
    outcome: Literal["fitted", "skipped", "failed"]
    version: str | None = Field(default=None, description="The model version written (fitted).")
    detail: str | None = Field(default=None, examples=["CLV needs at least 10 customers with purchases"])


class BatchStatus(BaseModel):
    """The background fit of segments' time windows, CLV and RFM clusters (``POST /models/fit`` starts one)."""

    state: Literal["idle", "running", "done"] = Field(description="done: the last run finished.")
    step: str | None = Field(default=None, description="The job running now.", examples=["clv"])
    steps_done: int = 0
    steps_total: int = 3
    runs: int = Field(default=0, description="Runs finished since the service started.")
    requested: int = Field(
        default=0, description="The run that serves the latest request: done when `runs` reaches it."
    )
    started_at: datetime | None = None
    finished_at: datetime | None = None
    jobs: list[BatchJobResult] = Field(default_factory=list, description="The last finished run's jobs.")


class MembersExcluded(BaseModel):
    """Members a marketing export left out, for one reason."""

    reason: str = Field(examples=["marketing consent withdrawn"])
    count: int = Field(ge=0)


class CustomerPage(BaseModel):
    items: list[CustomerProfile]
    total: int = Field(description="Customers the query answers (after any exclusion), over every page.")
    limit: int
    offset: int
    excluded: list[MembersExcluded] | None = Field(
        default=None,
        description="A marketing export (purpose=marketing): how many members were left out and why "
        "(always lists `marketing consent withdrawn`, with 0 when none was). Null for other queries.",
        examples=[[{"reason": "marketing consent withdrawn", "count": 3}]],
    )


class CustomerPatch(BaseModel):
    """Traits are merged (a null value removes the trait); email/phone replace the current ones."""

    model_config = ConfigDict(extra="forbid")

    traits: dict[str, Any] | None = None
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()\-]{4,31}$")


class TimelineItem(BaseModel):
    event_id: str
    type: str
    channel: str | None = None
    occurred_at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class TimelinePage(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next (older) page."
    )


class LookupResult(BaseModel):
    customer_id: str
    matched: str = Field(description="The identifier kind that matched.")


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_ids: list[str] = Field(
        min_length=2, max_length=2, description="The two profiles; the survivor is chosen by the merge rules."
    )
    dry_run: bool = Field(
        default=False, description="Show what the merge would do without changing anything."
    )


class MergeResult(BaseModel):
    merge_id: str | None = Field(description="None for a dry run.")
    survivor_id: str
    merged_id: str
    dry_run: bool
    status: Literal["applied", "undone", "preview"]
    moved_identifiers: int
    moved_timeline_entries: int
    trait_conflicts: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Traits both profiles had with different values: which one is kept."
    )
    profile: CustomerProfile | None = Field(
        default=None, description="The survivor as it is (or would be) after."
    )


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    rule: dict[str, Any] = Field(
        description="JSON condition: {and|or: [...]}, {not: ...}, or {field, op, value}; "
        "ops eq ne gt gte lt lte "
        "in not_in contains exists not_exists within older_than (time windows like '30d').",
        examples=[
            {
                "and": [
                    {"field": "revenue", "op": "gte", "value": 100},
                    {"field": "last_seen", "op": "within", "value": "30d"},
                ]
            }
        ],
    )


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    rule: dict[str, Any] | None = None


class SegmentOut(BaseModel):
    id: str
    name: str
    description: str | None = None
    rule: dict[str, Any]
    member_count: int
    created_at: datetime
    updated_at: datetime


class ErasureReceiptOut(BaseModel):
    erasure_id: str
    requested_at: datetime
    completed_at: datetime
    deleted: dict[str, int] = Field(description="How many rows of each kind were deleted.")
    already_erased: bool = False
