"""The sentiment logic: which model serves a text, how a probability becomes a label, and what a
consumed review or support message turns into. No FastAPI here."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.sentiment import repository
from services.sentiment.model import (
    KIND_CHINESE,
    KIND_ENSEMBLE,
    KIND_FINETUNED,
    KIND_FROZEN,
    ChineseModel,
    EnglishModel,
    detect_language,
    list_models,
    load_chinese,
    load_english,
)
from services.sentiment.settings import SentimentSettings
from shared.contracts import CloudEvent, EventTypeName, stable_event_id
from shared.contracts.events import Review, SentimentScored, SupportMessage
from shared.logging import get_logger

log = get_logger(__name__)

SOURCE = "/services/sentiment"


@dataclass(frozen=True, slots=True)
class Scored:
    label: str
    score: float
    language: str
    model_version: str


def label_for(probability: float, margin: float) -> str:
    """positive / negative, or neutral when the probability is within ``margin`` of 0.5."""
    if abs(probability - 0.5) < margin:
        return "neutral"
    return "positive" if probability >= 0.5 else "negative"


class SentimentEngine:
    """The loaded English and Chinese models; thread-safe for concurrent scoring."""

    def __init__(self, english: EnglishModel, chinese: ChineseModel, parallel: int = 1) -> None:
        self.english = english
        self.chinese = chinese
        # At most ``parallel`` English forwards at a time: one for torch (a forward already uses every
        # core, and the consumer thread and the HTTP batcher must not fight over them); one per core
        # for single-threaded ONNX Runtime sessions.
        self.english_slots = threading.BoundedSemaphore(max(1, parallel))

    def english_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        with self.english_slots:
            return self.english.predict_proba(texts, batch_size=batch_size)

    def chinese_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.chinese.predict_proba(texts)

    def result(self, probability: float, language: str) -> Scored:
        model: EnglishModel | ChineseModel = self.chinese if language == "zh" else self.english
        return Scored(
            label_for(probability, model.margin), round(float(probability), 6), language, model.version
        )

    def score(self, texts: Sequence[str]) -> list[Scored]:
        """Score texts synchronously (the consumer path; HTTP goes through the micro-batcher)."""
        languages = [detect_language(t) for t in texts]
        probs = np.zeros(len(texts))
        for language in ("en", "zh"):
            idx = [i for i, lang in enumerate(languages) if lang == language]
            if idx:
                subset = [texts[i] for i in idx]
                probs[idx] = self.chinese_proba(subset) if language == "zh" else self.english_proba(subset)
        return [self.result(p, lang) for p, lang in zip(probs, languages, strict=True)]

    def english_members(self) -> dict[str, Any] | None:
        meta = self.english.metadata
        if self.english.kind != KIND_ENSEMBLE:
            return None
        return {
            "network": meta.get("network"),
            "ngram": meta.get("ngram"),
            "ngram_weight": self.english.ngram_weight,
            "combination": meta.get("combination"),
        }

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "language": "en",
                "model_version": self.english.version,
                "kind": self.english.kind,
                "backend": self.english.backend,
                "device": self.english.device,
                "neutral_margin": self.english.margin,
                "metrics": self.english.metadata.get("metrics", {}),
                # For the ensemble: its network's version and the n-gram model's weight.
                "members": self.english_members(),
            },
            {
                "language": "zh",
                "model_version": self.chinese.version,
                "kind": KIND_CHINESE,
                "backend": "sklearn",
                "device": "cpu",
                "neutral_margin": self.chinese.margin,
                "metrics": self.chinese.metadata.get("metrics", {}),
            },
        ]


def english_model_dir(settings: SentimentSettings) -> Path | None:
    """The configured model, else the newest fine-tuned or ensemble one (``crm sentiment train`` writes
    the ensemble right after its network), else the newest first-start one."""
    models = Path(settings.data_dir) / "models"
    if settings.model_version:
        path = models / settings.model_version
        if not (path / "metadata.json").exists():
            raise FileNotFoundError(
                f"CRM_SENTIMENT_MODEL_VERSION={settings.model_version!r}: no model at {path}"
            )
        return path
    found = list_models(models, KIND_ENSEMBLE, KIND_FINETUNED) or list_models(models, KIND_FROZEN)
    return found[0] if found else None


def model_workers(settings: SentimentSettings) -> int:
    """How many English batches run at once (``CRM_SENTIMENT_MODEL_WORKERS``). Torch on CUDA or with
    every core per forward gains nothing from more than one, so only the ONNX backends use several."""
    return settings.model_workers if settings.cpu_backend.startswith("onnx") else 1


def load_engine(settings: SentimentSettings) -> SentimentEngine:
    """Load the models, training the first-start ones when none exist yet (about a minute)."""
    from services.sentiment import training

    started = time.perf_counter()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    en_dir = english_model_dir(settings)
    if en_dir is None:
        log.info("no_english_model_training_first_start", data_dir=settings.data_dir)
        en_dir = training.train_first_start(settings.data_dir, per_set_cap=settings.first_start_cap)
    zh_dirs = list_models(Path(settings.data_dir) / "models", KIND_CHINESE)
    zh_dir = zh_dirs[0] if zh_dirs else training.train_chinese(settings.data_dir)
    workers = model_workers(settings)
    english = load_english(
        en_dir,
        device=settings.device,
        backend=settings.cpu_backend,
        threads=settings.threads or (1 if workers > 1 else 0),
        token_budget=settings.token_budget,
    )
    chinese = load_chinese(zh_dir)
    log.info(
        "sentiment_models_loaded",
        english=english.version,
        backend=english.backend,
        device=english.device,
        chinese=chinese.version,
        seconds=round(time.perf_counter() - started, 1),
    )
    return SentimentEngine(english, chinese, parallel=workers if english.backend.startswith("onnx") else 1)


# --- events ---------------------------------------------------------------------------------------

SOURCE_TYPES = {EventTypeName.REVIEW.value: "review", EventTypeName.SUPPORT_MESSAGE.value: "support_message"}


@dataclass(frozen=True, slots=True)
class TextEvent:
    event_id: str
    event_type: str
    customer_id: str
    text: str


def text_event(event_id: str, event_type: str, subject: str | None, payload: Any) -> TextEvent | None:
    """The text and customer of a review / support message (``subject`` is the resolved customer)."""
    if not isinstance(payload, Review | SupportMessage):
        return None
    customer = subject or payload.customer.customer_id
    if not customer:
        return None
    return TextEvent(event_id, event_type, customer, payload.text)


def score_events(engine: SentimentEngine, session: Any, events: Sequence[TextEvent]) -> list[CloudEvent]:
    """Score, store, and build the sentiment-scored events. The event id is derived from the source
    event id and the model version, so a re-delivered source event yields the very same event."""
    if not events:
        return []
    scored = engine.score([e.text for e in events])
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    out: list[CloudEvent] = []
    for event, result in zip(events, scored, strict=True):
        source_type = SOURCE_TYPES[event.event_type]
        rows.append(
            {
                "source_event_id": event.event_id,
                "customer_id": event.customer_id,
                "original_customer_id": event.customer_id,
                "source_type": source_type,
                "label": result.label,
                "score": result.score,
                "language": result.language,
                "model_version": result.model_version,
                "scored_at": now,
            }
        )
        payload = SentimentScored(
            customer_id=event.customer_id,
            source_event_id=event.event_id,
            source_type=source_type,
            label=result.label,
            score=result.score,
            language=result.language,
            model_version=result.model_version,
        )
        out.append(
            CloudEvent.new(
                EventTypeName.SENTIMENT_SCORED,
                payload,
                source=SOURCE,
                subject=event.customer_id,
                id=stable_event_id("sentiment", event.event_id, result.model_version),
            )
        )
    repository.save_scores(session, rows)
    return out
