"""Offline evaluation with the Microsoft Recommenders protocol.

* ``stratified_split``: per user, a seeded random ``ratio`` of the interactions goes to train, the rest
  to test (``python_stratified_split``: random key per row, rank within user, train if
  ``rank <= round(ratio * count)``).
* every test item is relevant regardless of rating; training items are removed from the ranking; top-k.
* ``ndcg@k`` with binary gains and the ideal DCG over ``min(k, #relevant)``; ``precision@k``;
  ``recall@k``; ``map`` = the sum of precision at each hit in the top k divided by ``#relevant``
  (Recommenders' ``map_at_k``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def stratified_split(users: npt.NDArray[Any], ratio: float, seed: int) -> npt.NDArray[np.bool_]:
    """A boolean train mask: per user, a seeded random ``ratio`` of that user's rows."""
    users = np.unique(users, return_inverse=True)[1].astype(np.int64)
    rng = np.random.RandomState(seed)
    key = rng.rand(len(users))
    order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts) + 1
    limit = np.round(ratio * np.repeat(counts, counts))
    mask = np.zeros(len(users), dtype=bool)
    mask[order] = rank <= limit
    return mask


@dataclass(frozen=True, slots=True)
class RankingMetrics:
    map: float
    ndcg_at_k: float
    precision_at_k: float
    recall_at_k: float
    users: int

    def as_dict(self) -> dict[str, float]:
        return {
            "map": self.map,
            "ndcg_at_10": self.ndcg_at_k,
            "precision_at_10": self.precision_at_k,
            "recall_at_10": self.recall_at_k,
        }


def ranking_metrics(
    recommended: Sequence[Sequence[int]], relevant: Sequence[set[int]], k: int = 10
) -> RankingMetrics:
    """Mean metrics over users with at least one relevant item."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    maps: list[float] = []
    ndcgs: list[float] = []
    precisions: list[float] = []
    recalls: list[float] = []
    for top, truth in zip(recommended, relevant, strict=True):
        if not truth:
            continue
        hits = np.array([item in truth for item in list(top)[:k]], dtype=bool)
        n_hits = int(hits.sum())
        ideal = discounts[: min(k, len(truth))].sum()
        ndcgs.append(float(discounts[: len(hits)][hits].sum() / ideal))
        precisions.append(n_hits / k)
        recalls.append(n_hits / len(truth))
        ranks = np.flatnonzero(hits) + 1
        maps.append(float((np.arange(1, n_hits + 1) / ranks).sum() / len(truth)) if n_hits else 0.0)
    return RankingMetrics(
        map=float(np.mean(maps)),
        ndcg_at_k=float(np.mean(ndcgs)),
        precision_at_k=float(np.mean(precisions)),
        recall_at_k=float(np.mean(recalls)),
        users=len(ndcgs),
    )
