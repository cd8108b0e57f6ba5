"""The sentiment logic: which model serves a text, how a probability becomes a label, and what a
consumed review or support message turns into. No FastAPI here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.sentiment import data, repository
from services.sentiment.model import (
    ENGLISH_FIRST_START_KINDS,
    ENGLISH_SERVED_KINDS,
    ENSEMBLE_KINDS,
    KIND_CHINESE,
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

    def served(self) -> dict[str, dict[str, Any]]:
        """Per language: the served model's version and kind, its accuracy on the validation splits
        (what it was chosen by) and on each held-out test set (measured when it was trained)."""
        out: dict[str, dict[str, Any]] = {}
        for language, model in (("en", self.english), ("zh", self.chinese)):
            meta = model.metadata
            out[language] = {
                "model_version": model.version,
                "kind": meta.get("kind", KIND_CHINESE),
                "val_acc": validation_accuracy(meta),
                "test_acc": held_out_accuracy(meta),
            }
        return out

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
                    "val_acc": validation_accuracy(model.metadata),
                    "test_acc": held_out_accuracy(model.metadata),
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


def validation_sets(meta: dict[str, Any]) -> list[str]:
    """The English sets whose validation splits a model was scored on."""
    return [str(name) for name in meta.get("val_sets") or meta.get("data") or {}]


def validation_accuracy(meta: dict[str, Any]) -> float | None:
    """A model's accuracy on its validation splits together: ``metrics.val_acc``, or for a fine-tune
    written before that was recorded, its per-set validation accuracies weighted by their sizes."""
    metrics = meta.get("metrics") or {}
    if "val_acc" in metrics:
        return float(metrics["val_acc"])
    parts = [
        (float(metrics[f"{name}_val_acc"]), int(sizes.get("val", 0)))
        for name, sizes in (meta.get("data") or {}).items()
        if isinstance(sizes, dict) and f"{name}_val_acc" in metrics
    ]
    weight = sum(n for _, n in parts)
    return sum(acc * n for acc, n in parts) / weight if weight else None


def held_out_accuracy(meta: dict[str, Any]) -> dict[str, float]:
    """Accuracy per held-out test set (``<set>_test_acc`` in the metrics; measured, never chosen by)."""
    metrics = meta.get("metrics") or {}
    return {
        str(key).removesuffix("_test_acc"): float(value)
        for key, value in metrics.items()
        if str(key).endswith("_test_acc")
    }


def validation_standing(meta: dict[str, Any]) -> tuple[int, float]:
    """What the service compares English models by: validated on more English sets first (a model that
    never saw a set's validation split has not been measured on it), then validation accuracy."""
    accuracy = validation_accuracy(meta)
    return len(validation_sets(meta)), -1.0 if accuracy is None else accuracy


def _english_rank(path: Path) -> tuple[int, float, int, str]:
    meta = read_metadata(path)
    # Ties (no validation figures, or equal ones): a fine-tune before the first start, then the newest.
    tier = 0 if meta.get("kind") in ENGLISH_FIRST_START_KINDS else 1
    return (*validation_standing(meta), tier, str(meta.get("created_at", "")))


def english_model_dir(settings: SentimentSettings) -> Path | None:
    """The configured model, else the English model with the best validation standing
    (:func:`validation_standing`): the first start's ensemble until a fine-tune or its ensemble beats it
    on validation data."""
    models = Path(settings.data_dir) / "models"
    if settings.model_version:
        return _served_model_dir(settings, settings.model_version, "CRM_SENTIMENT_MODEL_VERSION", (), ())
    found = list_models(models, *ENGLISH_SERVED_KINDS)
    return max(found, key=_english_rank) if found else None


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


def load_english(settings: SentimentSettings, model_dir: Path) -> NetworkModel:
    workers = model_workers(settings)
    return load_network(
        model_dir,
        device=settings.device,
        backend=settings.cpu_backend,
        threads=settings.threads or (1 if workers > 1 else 0),
        token_budget=settings.token_budget,
    )


class EnglishUpgrader:
    """Switches the engine's English model to a better one found under ``data_dir/models``: only one that
    beats the served model's validation standing (:func:`validation_standing`), never a pinned one."""

    def __init__(
        self,
        engine: SentimentEngine,
        settings: SentimentSettings,
        on_switch: Callable[[SentimentEngine], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.on_switch = on_switch  # e.g. the app renaming its readiness check after the served versions
        self.failed: set[str] = set()  # versions that would not load; not tried again

    def check(self) -> bool:
        """Look once; True when the served English model was replaced."""
        if self.settings.model_version:
            return False
        served = self.engine.english
        best = english_model_dir(self.settings)
        if best is None or best.name in (served.version, *self.failed):
            return False
        candidate = read_metadata(best)
        if validation_standing(candidate) <= validation_standing(served.metadata):
            return False
        try:
            model = load_english(self.settings, best)
        except Exception:
            self.failed.add(best.name)
            log.exception("english_model_switch_failed", candidate=best.name)
            return False
        self.engine.english = model  # one reference swap: a batch in flight finishes on the old model
        if self.on_switch is not None:
            self.on_switch(self.engine)
        log.info(
            "english_model_switched",
            served=model.version,
            replaced=served.version,
            val_acc=validation_accuracy(candidate),
            replaced_val_acc=validation_accuracy(served.metadata),
        )
        return True


def load_engine(settings: SentimentSettings) -> SentimentEngine:
    """Load the models, training the first-start ones when none exist yet (about a minute)."""
    from services.sentiment import training

    started = time.perf_counter()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    en_dir = english_model_dir(settings)
    available = data.english_set_names(settings.data_dir)
    if en_dir is None or not (
        settings.model_version or set(available) <= set(validation_sets(read_metadata(en_dir)))
    ):
        # No English model yet, or none measured on every set there now (e.g. trained before `make install`
        # fetched Pang & Lee and fine-food): the first start trains one on all of them.
        log.info("english_first_start_training", data_dir=settings.data_dir, sets=available)
        training.train_first_start(settings.data_dir, per_set_cap=settings.first_start_cap)
        en_dir = english_model_dir(settings)
        assert en_dir is not None  # the first start's ensemble is there now
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

    english = load_english(settings, en_dir)
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
