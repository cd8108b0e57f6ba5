"""What the sentiment service answers the gateway: scores of texts and a customer's scored texts."""

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
