"""The recsys logic: live histories, popularity, the served model and its versions, training.

No FastAPI here. Request-path methods are synchronous and CPU-bound; the router runs them in the thread
pool. Consumers write interactions in the event's transaction and, once it commits, invalidate that
customer's cached history, so the very next request is scored from the new history.
"""

from __future__ import annotations

import heapq
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from services.recsys import repository
from services.recsys.model import ItemEmbeddingModel
from services.recsys.models import ReactionRow
from services.recsys.repository import CatalogItem, NewInteraction
from services.recsys.settings import RecsysSettings
from services.recsys.training import DEFAULT_GRID, NotEnoughData, train_dlae
from shared.db import forget_erased_data
from shared.errors import Conflict, NotFound
from shared.logging import get_logger

log = get_logger(__name__)

POPULARITY = "popularity"
# How many of the most popular items are kept ranked.
POPULAR_CACHE = 2000


class ItemNotFound(NotFound):
    """The item is unknown: not in the catalog, the served model or any interaction."""


class NotEnoughInteractions(Conflict):
    """Too few interactions to train a collaborative model yet."""


class TrainingInProgress(Conflict):
    """A training run is already in progress."""


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    item_id: str
    score: float
    because: list[str] = field(default_factory=list)
    because_weights: list[float] = field(default_factory=list)
    # From the catalog (crm.item_updated.v1); None/empty for an item the catalog does not name yet.
    name: str | None = None
    categories: list[str] = field(default_factory=list)
    because_names: list[str | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ItemInfo:
    item_id: str
    catalog: CatalogItem | None
    interactions: int
    in_model: bool


@dataclass(frozen=True, slots=True)
class Recommendations:
    model_version: str
    strategy: str  # "personalized" | "popularity" | "item_similarity"
    items: list[RecommendedItem]
    history_size: int = 0


class ModelStore:
    """Model versions as folders under ``models_dir``; ``CURRENT`` names the served one."""

    def __init__(self, models_dir: Path, keep: int) -> None:
        self.dir = models_dir
        self.keep = keep

    def current_version(self) -> str | None:
        try:
            version = (self.dir / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return version if version and (self.dir / version / "meta.json").exists() else None

    def set_current(self, version: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".CURRENT.{os.getpid()}.{threading.get_ident()}"
        tmp.write_text(version)
        os.replace(tmp, self.dir / "CURRENT")

    def publish(self, model: ItemEmbeddingModel) -> None:
        """Save a new version and make it current (each step atomic), then prune old versions."""
        model.save(self.dir)
        self.set_current(model.version)
        self.prune()

    def versions(self) -> list[dict[str, Any]]:
        import json

        metas = []
        for meta_file in self.dir.glob("*/meta.json"):
            try:
                metas.append(json.loads(meta_file.read_text()))
            except (OSError, ValueError):
                continue  # a version being deleted right now
        return sorted(metas, key=lambda m: m.get("trained_at", ""), reverse=True)

    def load(self, version: str) -> ItemEmbeddingModel:
        return ItemEmbeddingModel.load(self.dir / version)

    def prune(self) -> None:
        current = self.current_version()
        for meta in self.versions()[self.keep :]:
            if meta["version"] != current:
                shutil.rmtree(self.dir / meta["version"], ignore_errors=True)


class RecsysService:
    def __init__(self, settings: RecsysSettings, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.store = ModelStore(settings.models_dir(), settings.keep_versions)
        self._model: ItemEmbeddingModel | None = None
        self._lock = threading.Lock()
        self._train_lock = threading.Lock()
        self._histories: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._generation: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        self._popular: list[str] | None = None
        self._popular_at = 0.0
        self._popular_dirty = False
        self._total_interactions = 0
        self._new_since_train = 0
        self._erased_since_train = False
        self._catalog: dict[str, CatalogItem] = {}
        self._loaded = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_model_change: Callable[[str], None] | None = None
        self.last_training_error: str | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def model(self) -> ItemEmbeddingModel | None:
        return self._model

    @property
    def model_version(self) -> str:
        model = self._model
        return model.version if model is not None else POPULARITY

    @property
    def ready(self) -> bool:
        return self._loaded

    @property
    def total_interactions(self) -> int:
        return self._total_interactions

    @property
    def training(self) -> bool:
        return self._train_lock.locked()

    def load(self) -> None:
        """Load popularity from the database and the current model version from disk (if any)."""
        with self.session_factory() as session:
            counts = repository.item_counts(session)
            catalog = repository.catalog(session)
        with self._lock:
            self._counts = counts
            self._popular = None
            self._total_interactions = sum(counts.values())
            self._catalog = catalog
        version = self.store.current_version()
        if version is not None:
            try:
                self._swap(self.store.load(version))
            except Exception:
                log.exception("model_load_failed", version=version)
        self._loaded = True
        log.info("recsys_loaded", model_version=self.model_version, interactions=self._total_interactions)

    def serve(self, model: ItemEmbeddingModel) -> None:
        """Serve an already built model (benchmarks, or a model trained by other means)."""
        self._swap(model)

    def _swap(self, model: ItemEmbeddingModel) -> None:
        if model.index is None:
            model.build_index(**self.settings.index_options())
        self._model = model  # one reference assignment: requests see the old or the new model, whole
        self._new_since_train = 0
        log.info("model_swapped", version=model.version, items=model.n_items)
        if self.on_model_change is not None:
            self.on_model_change(model.version)

    # -- histories and popularity -------------------------------------------------------------

    def history(self, customer_id: str) -> dict[str, float]:
        with self._lock:
            cached = self._histories.get(customer_id)
            if cached is not None:
                self._histories.move_to_end(customer_id)
                return cached
            generation = self._generation.get(customer_id, 0)
        with self.session_factory() as session:
            items = repository.history(session, customer_id)
        with self._lock:
            # An event committed while we read: our copy may be stale, so do not cache it.
            if self._generation.get(customer_id, 0) == generation:
                self._histories[customer_id] = items
                while len(self._histories) > 100_000:
                    self._histories.popitem(last=False)
        return items

    def _invalidate(self, customer_ids: Iterable[str]) -> None:
        with self._lock:
            for customer_id in customer_ids:
                self._histories.pop(customer_id, None)
                self._generation[customer_id] = self._generation.get(customer_id, 0) + 1

    def _popular_items(self, need: int) -> list[tuple[str, float]]:
        """At least ``need`` items by popularity (fewer if the catalog is smaller), scores normalised to 0-1."""
        now = time.monotonic()
        with self._lock:
            counts = self._counts
            # Re-rank at most once a second under a stream of events; the head of the list moves slowly.
            if self._popular is None or (self._popular_dirty and now - self._popular_at > 1.0):
                self._popular = heapq.nlargest(POPULAR_CACHE, counts, key=lambda item: (counts[item], item))
                self._popular_at, self._popular_dirty = now, False
            popular = self._popular
            if need > len(popular) and len(counts) > len(popular):
                popular = heapq.nlargest(need, counts, key=lambda item: (counts[item], item))
            scored = [(item, counts.get(item, 0)) for item in popular]
        if scored:
            best = scored[0][1] or 1
            return [(item, n / best) for item, n in scored]
        model = self._model
        if model is None:
            return []
        order = np.argsort(-model.popularity, kind="stable")[: max(need, POPULAR_CACHE)]
        top = float(model.popularity[order[0]]) or 1.0
        return [(model.item_ids[j], float(model.popularity[j]) / top) for j in order]

    def _popularity(self, k: int, exclude: set[str]) -> list[RecommendedItem]:
        picked: list[RecommendedItem] = []
        for item, score in self._popular_items(k + len(exclude)):
            if item in exclude:
                continue
            picked.append(RecommendedItem(item, score))
            if len(picked) == k:
                break
        return picked

    # -- the catalog ---------------------------------------------------------------------------

    def item(self, item_id: str) -> ItemInfo:
        """What the service knows of an item: its catalog entry, interactions, whether the model has it."""
        model = self._model
        info = ItemInfo(
            item_id,
            self._catalog.get(item_id),
            self._counts.get(item_id, 0),
            model is not None and item_id in model.item_position,
        )
        if info.catalog is None and not info.interactions and not info.in_model:
            raise ItemNotFound(f"item {item_id!r} is not in the catalog, the model or any interaction")
        return info

    def items(self, item_ids: Sequence[str]) -> list[ItemInfo]:
        """The known ones of ``item_ids``, in that order (unknown ids are left out)."""
        out = []
        for item_id in dict.fromkeys(item_ids):
            try:
                out.append(self.item(item_id))
            except ItemNotFound:
                continue
        return out

    def record_items(self, session: Session, items: list[CatalogItem]) -> None:
        changed = repository.upsert_items(session, items)

        def committed() -> None:
            with self._lock:
                for item in changed:
                    self._catalog[item.item_id] = item

        if changed:
            _after_commit(session, committed)

    def _named(self, result: Recommendations) -> Recommendations:
        """The list with each item's and each "because" item's name and categories from the catalog."""
        catalog = self._catalog
        if not catalog:
            return result
        named = []
        for item in result.items:
            entry = catalog.get(item.item_id)
            names = [(c.name if (c := catalog.get(b)) is not None else None) for b in item.because]
            named.append(
                replace(
                    item,
                    name=entry.name if entry is not None else None,
                    categories=list(entry.categories) if entry is not None else [],
                    because_names=names,
                )
            )
        return replace(result, items=named)

    # -- recommendations -----------------------------------------------------------------------

    def _personalized(
        self, history: dict[str, float], k: int, exclude: set[str]
    ) -> tuple[str, list[RecommendedItem]] | None:
        model = self._model
        if model is None:
            return None
        known = {model.item_position[i]: 1.0 for i in history if i in model.item_position}
        if not known:
            return None
        banned = {model.item_position[i] for i in exclude if i in model.item_position}
        [row] = model.recommend_batch([known], k, exclude=[banned], explain=self.settings.explain_top)
        items = [
            RecommendedItem(
                model.item_ids[s.item_index],
                s.score,
                [model.item_ids[j] for j, _ in s.because],
                [w for _, w in s.because],
            )
            for s in row
            if model.item_ids[s.item_index] not in exclude
        ]
        if not items or items[0].score <= 0.0:
            return None  # the history says nothing the model can use (e.g. one item nobody else has)
        return model.version, items

    def recommend_for_customer(
        self, customer_id: str, k: int, exclude_interacted: bool = True
    ) -> Recommendations:
        """Top-k for a customer; popularity when the customer or their items are unknown to the model."""
        history = self.history(customer_id)
        exclude = set(history) if exclude_interacted else set()
        personal = self._personalized(history, k, exclude)
        if personal is not None:
            version, items = personal
            return self._named(Recommendations(version, "personalized", items, len(history)))
        return self._named(
            Recommendations(self.model_version, POPULARITY, self._popularity(k, exclude), len(history))
        )

    def recommend_for_session(self, item_ids: list[str], k: int) -> Recommendations:
        """Top-k for an anonymous visitor from the items of their session."""
        history = dict.fromkeys(item_ids, 1.0)
        exclude = set(history)
        personal = self._personalized(history, k, exclude)
        if personal is not None:
            version, items = personal
            return self._named(Recommendations(version, "personalized", items, len(history)))
        return self._named(
            Recommendations(self.model_version, POPULARITY, self._popularity(k, exclude), len(history))
        )

    def similar_items(self, item_id: str, k: int) -> Recommendations:
        """Items the model scores highest for someone who interacted with ``item_id`` only."""
        model = self._model
        if model is None or item_id not in model.item_position:
            raise ItemNotFound(f"item {item_id!r} is not in the served model ({self.model_version})")
        personal = self._personalized({item_id: 1.0}, k, {item_id})
        if personal is None:  # nobody else interacted with it: nothing is similar yet
            return Recommendations(model.version, "item_similarity", [], 1)
        version, items = personal
        return self._named(Recommendations(version, "item_similarity", items, 1))

    # -- events (called inside the consumer's transaction) -------------------------------------

    def record_interactions(self, session: Session, rows: list[NewInteraction]) -> None:
        if not rows:
            return
        repository.add_interactions(session, rows)
        customers = {r.customer_id for r in rows}
        items = [r.item_id for r in rows]

        def committed() -> None:
            self._invalidate(customers)
            with self._lock:
                for item in items:
                    self._counts[item] = self._counts.get(item, 0) + 1
                self._popular_dirty = True
                self._total_interactions += len(items)
                self._new_since_train += len(items)

        _after_commit(session, committed)

    def record_reaction(self, session: Session, row: ReactionRow) -> None:
        repository.add_reaction(session, row)

    def erase_customer(self, session: Session, customer_id: str) -> None:
        interactions, reactions = repository.erase_customer(session, customer_id)

        def committed() -> None:
            self._invalidate([customer_id])
            self._reload_counts()
            # The served model was fitted on their data too: retrain without it soon.
            self._erased_since_train = self._erased_since_train or interactions > 0

        _after_commit(session, committed)
        forget_erased_data(session)
        log.info("customer_erased", customer_id=customer_id, interactions=interactions, reactions=reactions)

    def merge_customers(self, session: Session, survivor_id: str, merged_id: str, undone: bool) -> None:
        if undone:
            moved = repository.unmerge_customers(session, survivor_id, merged_id)
        else:
            moved = repository.merge_customers(session, survivor_id, merged_id)
        _after_commit(session, lambda: self._invalidate([survivor_id, merged_id]))
        log.info("customers_merged", survivor_id=survivor_id, merged_id=merged_id, undone=undone, moved=moved)

    def _reload_counts(self) -> None:
        with self.session_factory() as session:
            counts = repository.item_counts(session)
        with self._lock:
            self._counts = counts
            self._popular = None
            self._total_interactions = sum(counts.values())

    # -- training ------------------------------------------------------------------------------

    def train(self, *, progress: bool = False) -> dict[str, Any]:
        """Train on every interaction in the database, publish the version and swap it in."""
        if not self._train_lock.acquire(blocking=False):
            raise TrainingInProgress("a training run is already in progress")
        try:
            self._erased_since_train = False
            with self.session_factory() as session:
                pairs = list(repository.distinct_pairs(session))
            customers = [c for c, _ in pairs]
            items = [i for _, i in pairs]
            try:
                model = train_dlae(
                    customers,
                    items,
                    grid=self.settings.tuning_grid or DEFAULT_GRID,
                    max_items=self.settings.max_model_items,
                    min_interactions=self.settings.min_train_interactions,
                    progress=progress,
                    serving_rank=self.settings.serving_rank,
                )
            except NotEnoughData as exc:
                raise NotEnoughInteractions(str(exc)) from exc
            model.build_index(**self.settings.index_options())
            self.store.publish(model)
            self._swap(model)
            self.last_training_error = None
            return model.meta()
        finally:
            self._train_lock.release()

    def train_in_background(self) -> bool:
        """Start a training run in a thread; False when one is already running."""
        if self.training:
            return False
        threading.Thread(target=self._train_quietly, name="recsys-train", daemon=True).start()
        return True

    def _train_quietly(self) -> None:
        try:
            self.train()
        except TrainingInProgress:
            pass
        except NotEnoughInteractions as exc:
            log.info("training_skipped", reason=str(exc))
        except Exception as exc:
            self.last_training_error = f"{type(exc).__name__}: {exc}"
            log.exception("training_failed")

    def needs_training(self) -> bool:
        with self._lock:
            total, fresh = self._total_interactions, self._new_since_train
        if self._model is None:
            return total >= self.settings.min_train_interactions
        return fresh >= self.settings.retrain_after_events or self._erased_since_train

    def start(self) -> None:
        """The background loop: pick up versions trained elsewhere (CLI) and retrain when due."""
        self._thread = threading.Thread(target=self._loop, name="recsys-trainer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                current = self.store.current_version()
                if current is not None and current != self.model_version and not self.training:
                    self._swap(self.store.load(current))
                if self.settings.auto_train and self.needs_training():
                    self._train_quietly()
            except Exception:
                log.exception("trainer_loop_error")
            self._stop.wait(self.settings.retrain_check_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- reports -------------------------------------------------------------------------------

    def reaction_report(self) -> dict[str, dict[str, Any]]:
        with self.session_factory() as session:
            report: dict[str, dict[str, Any]] = dict(repository.reaction_report(session))
        for counts in report.values():
            impressions = counts["impressions"]
            counts["ctr"] = counts["clicks"] / impressions if impressions else None
        return report

    def versions(self) -> list[dict[str, Any]]:
        online = self.reaction_report()
        current = self.model_version
        return [
            {**meta, "serving": meta["version"] == current, "online": online.get(meta["version"])}
            for meta in self.store.versions()
        ]


def _after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction commits (never on rollback)."""
    event.listen(session, "after_commit", lambda _session: callback(), once=True)
