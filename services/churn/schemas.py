"""The churn API's request and response models: they cross to the gateway, so they live in
``shared.contracts.http.churn``, the one definition both sides use."""

from shared.contracts.http.churn import (
    AtRiskCustomer,
    AtRiskResponse,
    Band,
    BatchScores,
    ChurnScore,
    ModelInfo,
    NextBestAction,
    ReactionIn,
    ReactionOut,
    ReasonOut,
    RescoreResult,
    RowScore,
    RuleIn,
    RuleOut,
    ScoreRequest,
    ScoreResponse,
    Trend,
    WithheldAction,
)

__all__ = [
    "AtRiskCustomer",
    "AtRiskResponse",
    "Band",
    "BatchScores",
    "ChurnScore",
    "ModelInfo",
    "NextBestAction",
    "ReactionIn",
    "ReactionOut",
    "ReasonOut",
    "RescoreResult",
    "RowScore",
    "RuleIn",
    "RuleOut",
    "ScoreRequest",
    "ScoreResponse",
    "Trend",
    "WithheldAction",
]
