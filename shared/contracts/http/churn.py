"""What the churn service answers (and takes) over HTTP: churn scores with reasons, the at-risk list, action rules and reactions.

The service answers with these models and the gateway reads with them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Band = Literal["low", "medium", "high"]
Trend = Literal["improving", "steady", "declining"]


class ReasonOut(BaseModel):
    feature: str
    value: Any = None
    weight: float = Field(description="Push on the log-odds of churn (positive raises risk).")
    text: str = Field(examples=["no purchase for 94 days, +0.21"])


class NextBestAction(BaseModel):
    rule_id: str
    rule_name: str
    action: str
    priority: int


class WithheldAction(BaseModel):
    """A rule that matched but whose action this customer may not receive."""

    rule_id: str
    action: str
    reason: str = Field(examples=["marketing consent withdrawn on 2026-11-02"])


class ChurnScore(BaseModel):
    customer_id: str
    has_history: bool = Field(
        description="False: no activity recorded; probability is the model's prior churn rate, no reasons."
    )
    probability: float = Field(ge=0, le=1)
    band: Band
    trend: Trend = Field(description="Risk over the recent scores: declining means risk is rising.")
    reasons: list[ReasonOut]
    raw_score: float | None = Field(default=None, description="Log-odds before calibration.")
    base_value: float | None = Field(default=None, description="Log-odds of the average customer.")
    other_weight: float | None = Field(
        default=None,
        description="Sum of the contributions not listed: base_value + reasons + other = raw_score.",
    )
    next_best_action: NextBestAction | None = None
    actions_withheld: list[WithheldAction] = Field(
        default_factory=list,
        description="Higher-priority actions left out, with why (a marketing action without marketing consent).",
    )
    value: float | None = Field(
        default=None, description="Customer value (CLV when known, else BG/NBD estimate)."
    )
    value_source: str | None = None
    model_version: str
    as_of: str | None = Field(default=None, description="The time recency is measured against (ISO 8601).")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_ids: list[str] = Field(default_factory=list, max_length=10_000)
    rows: list[dict[str, Any]] = Field(default_factory=list, max_length=100_000, description="Feature rows.")
    columns: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Column-oriented feature rows for bulk scoring ({feature: [values]}); answered in `batch`.",
    )
    model: Literal["events", "table"] = Field(default="events", description="Which model scores `rows`.")
    reasons: bool = False

    @model_validator(mode="after")
    def _something(self) -> ScoreRequest:
        if not self.customer_ids and not self.rows and not self.columns:
            raise ValueError("give customer_ids, rows or columns")
        return self


class RowScore(BaseModel):
    probability: float
    band: Band
    raw_score: float
    reasons: list[ReasonOut] = Field(default_factory=list)
    model_version: str


class BatchScores(BaseModel):
    probabilities: list[float]
    bands: list[Band]
    model_version: str


class ScoreResponse(BaseModel):
    customers: list[ChurnScore] = Field(default_factory=list)
    rows: list[RowScore] = Field(default_factory=list)
    batch: BatchScores | None = None


class AtRiskCustomer(BaseModel):
    customer_id: str
    probability: float
    band: Band
    value: float | None
    value_at_risk: float | None
    reasons: list[ReasonOut]
    model_version: str


class AtRiskResponse(BaseModel):
    customers: list[AtRiskCustomer]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_\-]{0,99}$")
    name: str = Field(min_length=1, max_length=200)
    action: str = Field(min_length=1, max_length=100, examples=["retention_offer", "support_callback"])
    priority: int = 0
    bands: list[Band] | None = None
    min_probability: float | None = Field(default=None, ge=0, le=1)
    max_probability: float | None = Field(default=None, ge=0, le=1)
    min_value: float | None = None
    max_value: float | None = None
    min_sentiment: float | None = Field(default=None, ge=0, le=1)
    max_sentiment: float | None = Field(default=None, ge=0, le=1)
    segment: str | None = Field(default=None, description="Segment id or name the customer must be in.")
    enabled: bool = True


class RuleOut(RuleIn):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    id: str
    reactions: dict[str, int] = Field(default_factory=lambda: {"accepted": 0, "rejected": 0, "ignored": 0})


class ReactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=200)
    rule_id: str = Field(min_length=1, max_length=100)
    action: str = Field(min_length=1, max_length=100)
    reaction: Literal["accepted", "rejected", "ignored"]


class ReactionOut(ReactionIn):
    id: int
    counts: dict[str, int]


class RescoreResult(BaseModel):
    customers: int
    band_changes: int = Field(description="churn-risk-changed events emitted.")
    as_of: str | None


class ModelInfo(BaseModel):
    status: str
    version: str | None
    kind: str | None
    metrics: dict[str, Any]
    table_model_version: str | None
    versions: list[dict[str, Any]]
