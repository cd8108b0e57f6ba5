"""The sentiment API's request and response models: they cross to the gateway, so they live in
``shared.contracts.http.sentiment``, the one definition both sides use."""

from shared.contracts.http.sentiment import (
    CustomerSentiment,
    CustomerSentimentItem,
    EnsembleMembers,
    Label,
    ModelInfo,
    ModelsResponse,
    SentimentRequest,
    SentimentResponse,
    SentimentResult,
    TrainingProgress,
)

__all__ = [
    "CustomerSentiment",
    "CustomerSentimentItem",
    "EnsembleMembers",
    "Label",
    "ModelInfo",
    "ModelsResponse",
    "SentimentRequest",
    "SentimentResponse",
    "SentimentResult",
    "TrainingProgress",
]
