"""HTTP routes of the sentiment service: parse, call the engine, shape the response."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from services.sentiment import repository
from services.sentiment.batcher import MicroBatcher
from services.sentiment.model import detect_language
from services.sentiment.progress import read_progress
from services.sentiment.schemas import (
    CustomerSentiment,
    CustomerSentimentItem,
    ModelInfo,
    ModelsResponse,
    SentimentRequest,
    SentimentResponse,
    SentimentResult,
    TrainingProgress,
)
from services.sentiment.service import SentimentEngine
from services.sentiment.settings import SentimentSettings
from shared.errors import InvalidRequest, NotReady

router = APIRouter(tags=["sentiment"])


class TooManyTexts(InvalidRequest):
    """The request holds more texts than one request may."""


class TextTooLong(InvalidRequest):
    """A text is longer than the service accepts."""


def get_engine(request: Request) -> SentimentEngine:
    engine: SentimentEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise NotReady("the sentiment model is still loading; see /readyz")
    return engine


def get_batcher(request: Request) -> MicroBatcher:
    batcher: MicroBatcher = request.app.state.batcher
    return batcher


def get_chinese_batcher(request: Request) -> MicroBatcher:
    batcher: MicroBatcher = request.app.state.chinese_batcher
    return batcher


def get_settings_dep(request: Request) -> SentimentSettings:
    settings: SentimentSettings = request.app.state.settings
    return settings


def get_session(request: Request):  # type: ignore[no-untyped-def]
    with request.app.state.runtime.session_factory() as session:
        yield session


EngineDep = Annotated[SentimentEngine, Depends(get_engine)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
ChineseBatcherDep = Annotated[MicroBatcher, Depends(get_chinese_batcher)]
SettingsDep = Annotated[SentimentSettings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]


@router.post("/sentiment", response_model=SentimentResponse)
async def score_texts(
    body: SentimentRequest,
    engine: EngineDep,
    batcher: BatcherDep,
    chinese_batcher: ChineseBatcherDep,
    settings: SettingsDep,
) -> SentimentResponse:
    """Label each text positive, negative or neutral, with P(positive), its language and the model version."""
    if len(body.texts) > settings.max_texts_per_request:
        raise TooManyTexts(f"{len(body.texts)} texts; at most {settings.max_texts_per_request} per request")
    too_long = [i for i, t in enumerate(body.texts) if len(t) > settings.max_text_chars]
    if too_long:
        raise TextTooLong(f"texts {too_long[:10]} are longer than {settings.max_text_chars} characters")
    languages = [detect_language(t) for t in body.texts]
    probs = np.zeros(len(body.texts))
    en = [i for i, lang in enumerate(languages) if lang == "en"]
    zh = [i for i, lang in enumerate(languages) if lang == "zh"]
    if en:
        probs[en] = await batcher.submit([body.texts[i] for i in en])
    if zh:
        probs[zh] = await chinese_batcher.submit([body.texts[i] for i in zh])
    results = [engine.result(p, lang) for p, lang in zip(probs, languages, strict=True)]
    return SentimentResponse(
        results=[
            SentimentResult(label=r.label, score=r.score, language=r.language, model_version=r.model_version)
            for r in results
        ]
    )


@router.get("/sentiment/models", response_model=ModelsResponse)
async def models(engine: EngineDep, settings: SettingsDep) -> ModelsResponse:
    """The models being served, their versions, backends and held-out/validation metrics, and the
    progress of a fine-tune started here."""
    progress = read_progress(settings.data_dir)
    return ModelsResponse(
        models=[ModelInfo.model_validate(m) for m in engine.describe()],
        training=TrainingProgress.model_validate(progress) if progress else None,
    )


@router.get("/customers/{customer_id}/sentiment", response_model=CustomerSentiment)
def customer_sentiment(
    customer_id: str, session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> CustomerSentiment:
    """A customer's scored reviews and support messages, newest first, with their mean score."""
    count, mean = repository.customer_summary(session, customer_id)
    items = [
        CustomerSentimentItem.model_validate(row, from_attributes=True)
        for row in repository.scores_for_customer(session, customer_id, limit)
    ]
    return CustomerSentiment(customer_id=customer_id, count=count, mean_score=mean, items=items)
