"""The served model: item vectors in a FAISS index and a linear map from a customer's history to a query.

A customer's query vector is ``sum_j w_j * query_basis[j]`` over the items j they interacted with, and an
item's score is the inner product of that query with the item's vector. For the linear autoencoder
(EASE/DLAE) the basis is the identity, so the query is the customer's interaction row ``x_u`` and item
vectors are the columns of ``B``: ``score = x_u . B[:, i]``, the model's exact score, computed by FAISS.
Because the query is rebuilt from the live history on every request, a new event changes the next answer
(the fold-in of a linear autoencoder is exact and free). The same decomposition gives the explanation:
item j contributed ``w_j * query_basis[j] . item_vectors[i]`` to item i's score.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.recsys.index import ItemIndex

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Scored:
    item_index: int
    score: float
    because: tuple[tuple[int, float], ...] = ()


@dataclass
class ItemEmbeddingModel:
    """Item vectors plus what is needed to turn a history into a query; immutable once built."""

    version: str
    algorithm: str
    item_ids: list[str]
    item_vectors: FloatArray
    query_basis: FloatArray | None  # None: identity (the query is the interaction row itself)
    popularity: FloatArray
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: str = ""
    training_interactions: int = 0
    index: ItemIndex | None = None
    item_position: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.item_position = {item: i for i, item in enumerate(self.item_ids)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    def build_index(self, **index_options: Any) -> ItemIndex:
        self.index = ItemIndex(self.item_vectors, **index_options)
        return self.index

    # -- scoring -------------------------------------------------------------------------------

    def query(self, history: dict[int, float]) -> FloatArray:
        """The query vector of a history given as {item index: weight}."""
        q = np.zeros(self.dim, dtype=np.float32)
        if not history:
            return q
        idx = np.fromiter(history.keys(), dtype=np.int64, count=len(history))
        w = np.fromiter(history.values(), dtype=np.float32, count=len(history))
        if self.query_basis is None:
            q[idx] = w
        else:
            q[:] = w @ self.query_basis[idx]
        return q

    def recommend_batch(
        self,
        histories: list[dict[int, float]],
        k: int,
        *,
        exclude: list[set[int]] | None = None,
        explain: int = 0,
    ) -> list[list[Scored]]:
        """Top-k items per history through the FAISS index, excluding each history's own items."""
        if self.index is None:
            raise RuntimeError("build_index() first")
        if exclude is None:
            exclude = [set(h) for h in histories]
        queries = (
            np.stack([self.query(h) for h in histories]) if histories else np.zeros((0, self.dim), np.float32)
        )
        depth = k + max((len(e) for e in exclude), default=0)
        scores, ids = self.index.search(queries, depth)
        results: list[list[Scored]] = []
        for row, banned in enumerate(exclude):
            picked: list[tuple[int, float]] = []
            for item, score in zip(ids[row], scores[row], strict=True):
                if item < 0 or int(item) in banned:
                    continue
                picked.append((int(item), float(score)))
                if len(picked) == k:
                    break
            reasons = self.explain(histories[row], [i for i, _ in picked], explain) if explain else None
            results.append(
                [Scored(item, score, reasons[n] if reasons else ()) for n, (item, score) in enumerate(picked)]
            )
        return results

    def explain(
        self, history: dict[int, float], items: list[int], top: int
    ) -> list[tuple[tuple[int, float], ...]]:
        """Per item, the history items that contributed most (positively) to its score."""
        if not history or not items:
            return [() for _ in items]
        idx = np.fromiter(history.keys(), dtype=np.int64, count=len(history))
        w = np.fromiter(history.values(), dtype=np.float32, count=len(history))
        targets = np.asarray(items, dtype=np.int64)
        if self.query_basis is None:
            contrib = w[None, :] * self.item_vectors[targets][:, idx]
        else:
            contrib = w[None, :] * (self.item_vectors[targets] @ self.query_basis[idx].T)
        # An item never explains itself (it is excluded from recommendations anyway).
        contrib[idx[None, :] == targets[:, None]] = -np.inf
        top = min(top, idx.size)
        best = np.argpartition(-contrib, top - 1, axis=1)[:, :top]
        out: list[tuple[tuple[int, float], ...]] = []
        for n in range(len(items)):
            order = best[n][np.argsort(-contrib[n, best[n]])]
            out.append(tuple((int(idx[o]), float(contrib[n, o])) for o in order if contrib[n, o] > 0))
        return out

    # -- persistence ---------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "algorithm": self.algorithm,
            "items": self.n_items,
            "dim": self.dim,
            "params": self.params,
            "metrics": self.metrics,
            "trained_at": self.trained_at,
            "training_interactions": self.training_interactions,
        }

    def save(self, models_dir: Path) -> Path:
        """Write the version folder atomically (a temp folder renamed into place)."""
        models_dir.mkdir(parents=True, exist_ok=True)
        final = models_dir / self.version
        tmp = models_dir / f".{self.version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        arrays: dict[str, Any] = {
            "item_ids": np.asarray(self.item_ids, dtype=object).astype(str),
            "item_vectors": self.item_vectors,
            "popularity": self.popularity,
        }
        if self.query_basis is not None:
            arrays["query_basis"] = self.query_basis
        np.savez(tmp / "model.npz", **arrays)
        (tmp / "meta.json").write_text(json.dumps(self.meta(), indent=2))
        os.replace(tmp, final)
        return final

    @classmethod
    def load(cls, folder: Path) -> ItemEmbeddingModel:
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "model.npz", allow_pickle=False) as data:
            basis = data["query_basis"] if "query_basis" in data.files else None
            return cls(
                version=meta["version"],
                algorithm=meta["algorithm"],
                item_ids=[str(x) for x in data["item_ids"]],
                item_vectors=np.ascontiguousarray(data["item_vectors"], dtype=np.float32),
                query_basis=basis,
                popularity=data["popularity"].astype(np.float32),
                params=meta.get("params", {}),
                metrics=meta.get("metrics", {}),
                trained_at=meta.get("trained_at", ""),
                training_interactions=meta.get("training_interactions", 0),
            )
