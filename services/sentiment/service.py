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
    ENGLISH_ENSEMBLE_KINDS,
    ENGLISH_FINETUNED_KINDS,
    ENSEMBLE_KINDS,
    KIND_CHINESE,
    KIND_FROZEN,
    KIND_ZH_ENSEMBLE,
    KIND_ZH_FINETUNED,
    Backend,
    ChineseModel,
    NetworkModel,
    detect_language,
    list_models,
    load_chinese,
    load_network,
    read_metadata,
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

    def __init__(
        self, english: NetworkModel, chinese: NetworkModel | ChineseModel, parallel: int = 1
    ) -> None:
        self.english = english
        self.chinese = chinese
        # At most ``parallel`` network forwards at a time, English and Chinese together: one for torch (a
        # forward already uses every core, and the consumer thread and the HTTP batchers must not fight
        # over them); one per core for single-threaded ONNX Runtime sessions.
        self.network_slots = threading.BoundedSemaphore(max(1, parallel))

    def english_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        with self.network_slots:
            return self.english.predict_proba(texts, batch_size=batch_size)

    def chinese_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if isinstance(self.chinese, ChineseModel):
            return self.chinese.predict_proba(texts)  # the n-gram model alone: no network to share
        with self.network_slots:
            return self.chinese.predict_proba(texts, batch_size=batch_size)

    def result(self, probability: float, language: str) -> Scored:
        model: NetworkModel | ChineseModel = self.chinese if language == "zh" else self.english
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

    @staticmethod
    def members(model: NetworkModel) -> dict[str, Any] | None:
        """An ensemble's parts: its network's version and the n-gram model's weight."""
        meta = model.metadata
        if model.kind not in ENSEMBLE_KINDS:
            return None
        return {
            "network": meta.get("network"),
            "ngram": meta.get("ngram"),
            "ngram_weight": model.ngram_weight,
            "combination": meta.get("combination"),
        }

    def describe(self) -> list[dict[str, Any]]:
        described = []
        for language, model in (("en", self.english), ("zh", self.chinese)):
            if isinstance(model, ChineseModel):
                kind, backend, device, members = KIND_CHINESE, "sklearn", "cpu", None
            else:
                kind, backend, device, members = model.kind, model.backend, model.device, self.members(model)
            described.append(
                {
                    "language": language,
                    "model_version": model.version,
                    "kind": kind,
                    "backend": backend,
                    "device": device,
                    "neutral_margin": model.margin,
                    "metrics": model.metadata.get("metrics", {}),
                    "members": members,
                }
            )
        return described


def _served_model_dir(
    settings: SentimentSettings,
    pinned: str | None,
    variable: str,
    preferred: tuple[str, ...],
    fallback: tuple[str, ...],
) -> Path | None:
    models = Path(settings.data_dir) / "models"
    if pinned:
        path = models / pinned
        if not (path / "metadata.json").exists():
            raise FileNotFoundError(f"{variable}={pinned!r}: no model at {path}")
        return path
    found = list_models(models, *preferred) or list_models(models, *fallback)
    return found[0] if found else None


def english_model_dir(settings: SentimentSettings) -> Path | None:
    """The configured model, else the newest fine-tuned or ensemble one (``crm sentiment train`` writes
    the ensemble right after its network), else the newest first-start one."""
    return _served_model_dir(
        settings,
        settings.model_version,
        "CRM_SENTIMENT_MODEL_VERSION",
        (*ENGLISH_ENSEMBLE_KINDS, *ENGLISH_FINETUNED_KINDS),
        (KIND_FROZEN,),
    )


def chinese_model_dir(settings: SentimentSettings) -> Path | None:
    """The configured Chinese model, else the newest Chinese fine-tune or its ensemble (``crm sentiment
    train-chinese`` writes the ensemble right after its network), else the newest character n-gram one."""
    return _served_model_dir(
        settings,
        settings.zh_model_version,
        "CRM_SENTIMENT_ZH_MODEL_VERSION",
        (KIND_ZH_ENSEMBLE, KIND_ZH_FINETUNED),
        (KIND_CHINESE,),
    )


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
    zh_dir = chinese_model_dir(settings) or training.train_chinese(settings.data_dir)
    workers = model_workers(settings)

    def network(model_dir: Path, backend: Backend) -> NetworkModel:
        return load_network(
            model_dir,
            device=settings.device,
            backend=backend,
            threads=settings.threads or (1 if workers > 1 else 0),
            token_budget=settings.token_budget,
        )

    english = network(en_dir, settings.cpu_backend)
    if read_metadata(zh_dir)["kind"] == KIND_CHINESE:
        chinese: NetworkModel | ChineseModel = load_chinese(zh_dir)
    else:
        chinese = network(zh_dir, settings.zh_cpu_backend)
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
