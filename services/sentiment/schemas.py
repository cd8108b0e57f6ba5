"""Request and response models of the sentiment API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts.http.sentiment import (
    CustomerSentiment,
    CustomerSentimentItem,
    Label,
    SentimentRequest,
    SentimentResponse,
    SentimentResult,
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
]


class EnsembleMembers(BaseModel):
    network: str = Field(description="Model version of the fine-tuned network.")
    ngram: dict[str, str | float] = Field(description="The word n-gram model: features, classifier, C.")
    ngram_weight: float = Field(ge=0, le=1, description="Weight of the n-gram model's probability.")
    combination: str


class ModelInfo(BaseModel):
    language: Literal["en", "zh"]
    model_version: str
    kind: str = Field(
        description="English: mpnet-ngram-ensemble / minilm-ngram-ensemble (the fine-tuned MPNet or "
        "MiniLM averaged with a word n-gram NB-LR), mpnet-finetuned / minilm-finetuned, minilm-frozen-lr "
        "(first start), minilm-untrained-head (the throughput bench's stand-in, only when pinned); Chinese: zh-e5-ngram-ensemble, zh-e5-finetuned or zh-char-ngram-lr (first start)."
    )
    backend: str = Field(description="How the network runs (for an ensemble: its network's backend).")
    device: str
    neutral_margin: float = Field(description="Texts with |score - 0.5| below this are labelled neutral.")
    metrics: dict[str, float]
    members: EnsembleMembers | None = Field(default=None, description="An ensemble's parts; else null.")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
