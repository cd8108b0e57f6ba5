"""What the sentiment service answers the gateway: scores of texts, a customer's scored texts, the models
it serves and the fine-tune under way."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Label = Literal["positive", "negative", "neutral"]


class SentimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(
        min_length=1,
        description="Texts to score (English or Chinese). Limits: CRM_SENTIMENT_MAX_TEXTS_PER_REQUEST texts, "
        "CRM_SENTIMENT_MAX_TEXT_CHARS characters each.",
        examples=[["The coffee arrived stale and the box was crushed.", "这本书写得很好，值得一读。"]],
    )


class SentimentResult(BaseModel):
    label: Label = Field(description="neutral when the model is not confident (see docs/sentiment.md).")
    score: float = Field(ge=0, le=1, description="Probability that the text is positive.")
    language: Literal["en", "zh"]
    model_version: str


class SentimentResponse(BaseModel):
    results: list[SentimentResult]


class CustomerSentimentItem(BaseModel):
    source_event_id: str
    source_type: str
    label: Label
    score: float
    language: str
    model_version: str
    scored_at: datetime


class CustomerSentiment(BaseModel):
    """A customer's scored reviews and support messages, newest first, with their mean score."""

    customer_id: str
    count: int
    mean_score: float | None
    items: list[CustomerSentimentItem]


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
        "MiniLM averaged with a word n-gram NB-LR), mpnet-finetuned / minilm-finetuned, "
        "minilm-frozen-ngram-ensemble (first start: frozen MiniLM + LR averaged with word and character "
        "n-gram NB-LRs), minilm-frozen-lr (its network alone), minilm-untrained-head (the throughput bench's stand-in, only when pinned); Chinese: zh-e5-ngram-ensemble, zh-e5-finetuned or zh-char-ngram-lr (first start)."
    )
    backend: str = Field(description="How the network runs (for an ensemble: its network's backend).")
    device: str
    neutral_margin: float = Field(description="Texts with |score - 0.5| below this are labelled neutral.")
    metrics: dict[str, float]
    val_acc: float | None = Field(
        default=None,
        description="Accuracy on the validation splits together: what the service chooses its model by.",
    )
    test_acc: dict[str, float] = Field(
        default_factory=dict,
        description="Accuracy on each held-out test set, measured when the model was trained.",
    )
    members: EnsembleMembers | None = Field(default=None, description="An ensemble's parts; else null.")


class TrainingProgress(BaseModel):
    """The last `crm sentiment train` run under this data dir (its progress file)."""

    state: Literal["running", "done", "stopped"] = Field(
        description="stopped: its process ended before it finished; the same command resumes it."
    )
    run_name: str
    kind: str
    step: int
    total_steps: int
    eta_s: int | None = Field(default=None, description="Seconds left at the run's pace so far.")
    best_val_acc: float | None = None
    version: str | None = Field(default=None, description="The model it wrote (when done).")
    val_acc: float | None = Field(default=None, description="That model's validation accuracy.")
    updated_at: str


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    training: TrainingProgress | None = Field(
        default=None,
        description="A fine-tune started here (e.g. `crm sentiment train --background`); its model is served "
        "once it beats the served one on validation data.",
    )
