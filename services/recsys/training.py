"""Training: a denoising linear autoencoder (DLAE; Steck, NeurIPS 2020), the dropout-regularised
sibling of EASE, in closed form: ``B = (G + L)^-1 G`` with ``G = X^T X`` and
``L = diag(p / (1 - p) * diag(G) + lambda)``. ``lambda`` and ``p`` are tuned on a validation split
carved from the training interactions only (per-user stratified, as the evaluation protocol does),
then the model is refitted on all training interactions. Pure numpy/scipy; no web imports.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from scipy import sparse

from services.recsys.evaluation import RankingMetrics, ranking_metrics, stratified_split
from services.recsys.model import ItemEmbeddingModel
from shared.logging import get_logger

log = get_logger(__name__)

DEFAULT_GRID: tuple[tuple[float, float], ...] = tuple(
    (lam, p) for lam in (100.0, 200.0, 400.0) for p in (0.4, 0.55, 0.7)
)


class NotEnoughData(ValueError):
    """Too few interactions to train a collaborative model."""


def new_version(algorithm: str) -> str:
    return f"{algorithm}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Encoded:
    """Distinct (customer, item) pairs as integer codes."""

    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    user_ids: list[str]
    item_ids: list[str]


def encode(customers: Sequence[str], items: Sequence[str], max_items: int | None = None) -> Encoded:
    """Integer-code the pairs (duplicates dropped); keep the ``max_items`` most popular items."""
    user_ids, u = np.unique(np.asarray(customers, dtype=object).astype(str), return_inverse=True)
    item_ids, i = np.unique(np.asarray(items, dtype=object).astype(str), return_inverse=True)
    pairs = np.unique(np.stack([u.astype(np.int64), i.astype(np.int64)], axis=1), axis=0)
    u, i = pairs[:, 0], pairs[:, 1]
    if max_items is not None and len(item_ids) > max_items:
        counts = np.bincount(i, minlength=len(item_ids))
        keep = np.sort(np.argsort(-counts, kind="stable")[:max_items])
        remap = np.full(len(item_ids), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        mask = remap[i] >= 0
        u, i, item_ids = u[mask], remap[i[mask]], item_ids[keep]
    return Encoded(u, i, [str(x) for x in user_ids], [str(x) for x in item_ids])


def interaction_matrix(
    users: npt.NDArray[np.int64], items: npt.NDArray[np.int64], n_users: int, n_items: int
) -> sparse.csr_matrix:
    data = np.ones(len(users), dtype=np.float64)
    matrix = sparse.csr_matrix((data, (users, items)), shape=(n_users, n_items))
    matrix.data[:] = 1.0  # binary: every interaction counts once
    return matrix


def fit_dlae(x: sparse.csr_matrix, lam: float, dropout: float) -> npt.NDArray[np.float32]:
    """Closed-form DLAE weights ``B`` (items x items)."""
    gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
    regularised = gram.copy()
    regularised[np.diag_indices_from(regularised)] += dropout / (1.0 - dropout) * np.diag(gram) + lam
    return np.linalg.solve(regularised, gram).astype(np.float32)


def factorise(
    weights: npt.NDArray[np.float32], rank: int, seed: int = 0
) -> tuple[npt.NDArray[np.float32], ...]:
    """``B ~ Q V^T`` of rank ``rank`` (truncated SVD, singular values split evenly): the query basis Q and
    the item vectors V. Serving then scans ``rank``-dim vectors instead of ``items``-dim ones.

    A randomised range finder (Halko et al. 2011) with two power iterations, then the SVD of the small
    projected matrix through the eigendecomposition of its Gram matrix: only matrix products and a
    ``rank``-sized ``eigh``, far cheaper than LAPACK's full SVD on a 2-core machine.
    """
    b = weights.astype(np.float64)
    n = b.shape[0]
    width = min(n, rank + 16)
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(b @ rng.standard_normal((n, width)))[0]
    for _ in range(2):
        q = np.linalg.qr(b @ np.linalg.qr(b.T @ q)[0])[0]
    small = q.T @ b  # width x n, B ~ q @ small
    eigenvalues, eigenvectors = np.linalg.eigh(small @ small.T)
    order = np.argsort(eigenvalues)[::-1][:rank]
    singular = np.sqrt(np.clip(eigenvalues[order], 1e-12, None))
    left = q @ eigenvectors[:, order]  # n x rank, orthonormal
    right = (small.T @ eigenvectors[:, order]) / singular  # n x rank, orthonormal
    root = np.sqrt(singular)
    query_basis = np.ascontiguousarray(left * root, dtype=np.float32)
    item_vectors = np.ascontiguousarray(right * root, dtype=np.float32)
    return query_basis, item_vectors


def evaluate_dense(
    x_train: sparse.csr_matrix, weights: npt.NDArray[np.float32], relevant: list[set[int]], k: int = 10
) -> RankingMetrics:
    """Exact top-k by dense scoring (used for tuning; the bench scores through FAISS)."""
    scores = np.asarray(x_train @ weights, dtype=np.float32)
    scores[x_train.nonzero()] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return ranking_metrics(np.take_along_axis(top, order, axis=1).tolist(), relevant, k)


def popularity_metrics(x_train: sparse.csr_matrix, relevant: list[set[int]], k: int = 10) -> RankingMetrics:
    counts = np.asarray(x_train.sum(axis=0)).ravel()
    scores = np.tile(counts, (x_train.shape[0], 1)).astype(np.float32)
    scores[x_train.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ranking_metrics(top.tolist(), relevant, k)


def tune_dlae(
    enc: Encoded,
    *,
    grid: Sequence[tuple[float, float]] = DEFAULT_GRID,
    seed: int = 0,
    ratio: float = 0.75,
    max_users: int = 5000,
    progress: bool = False,
) -> tuple[tuple[float, float], dict[str, float]]:
    """Pick (lambda, dropout) by nDCG@10 on a per-user stratified split of the given (training) pairs."""
    from tqdm import tqdm

    n_users, n_items = len(enc.user_ids), len(enc.item_ids)
    fit_mask = stratified_split(enc.users, ratio, seed)
    x_fit = interaction_matrix(enc.users[fit_mask], enc.items[fit_mask], n_users, n_items)
    relevant: list[set[int]] = [set() for _ in range(n_users)]
    for u, i in zip(enc.users[~fit_mask], enc.items[~fit_mask], strict=True):
        relevant[int(u)].add(int(i))
    # Score a sample of users with held-out items: the dense score matrix is users x items.
    candidates = np.flatnonzero([bool(r) for r in relevant])
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=min(max_users, len(candidates)), replace=False))
    x_eval = x_fit[chosen]
    rel_eval = [relevant[int(u)] for u in chosen]
    best: tuple[float, float] | None = None
    best_metrics: RankingMetrics | None = None
    for lam, dropout in tqdm(grid, desc="tuning DLAE", disable=not progress):
        metrics = evaluate_dense(x_eval, fit_dlae(x_fit, lam, dropout), rel_eval)
        log.info("dlae_candidate", lam=lam, dropout=dropout, ndcg_at_10=round(metrics.ndcg_at_k, 4))
        if best_metrics is None or metrics.ndcg_at_k > best_metrics.ndcg_at_k:
            best, best_metrics = (lam, dropout), metrics
    assert best is not None
    assert best_metrics is not None
    report = {f"validation_{k}": v for k, v in best_metrics.as_dict().items()}
    report["validation_popularity_ndcg_at_10"] = popularity_metrics(x_eval, rel_eval).ndcg_at_k
    report["validation_users"] = float(best_metrics.users)
    return best, report


def train_dlae(
    customers: Sequence[str],
    items: Sequence[str],
    *,
    grid: Sequence[tuple[float, float]] = DEFAULT_GRID,
    seed: int = 0,
    max_items: int = 8000,
    min_interactions: int = 200,
    progress: bool = False,
    version: str | None = None,
    serving_rank: int = 0,
) -> ItemEmbeddingModel:
    """Tune on a split of these interactions, refit on all of them, return the servable model."""
    enc = encode(customers, items, max_items)
    if len(enc.users) < min_interactions or len(enc.item_ids) < 2 or len(enc.user_ids) < 2:
        raise NotEnoughData(f"{len(enc.users)} distinct interactions; need at least {min_interactions}")
    if len(grid) > 1:
        (lam, dropout), metrics = tune_dlae(enc, grid=grid, seed=seed, progress=progress)
    else:
        (lam, dropout), metrics = grid[0], {}
    x = interaction_matrix(enc.users, enc.items, len(enc.user_ids), len(enc.item_ids))
    weights = fit_dlae(x, lam, dropout)
    popularity = np.asarray(x.sum(axis=0)).ravel().astype(np.float32)
    if 0 < serving_rank < len(enc.item_ids):
        # Low-rank B = Q V^T: the query is x_u Q, item vectors are rows of V; FAISS scans rank-dim vectors.
        query_basis, item_vectors = factorise(weights, serving_rank, seed)
        basis: npt.NDArray[np.float32] | None = query_basis
    else:
        # Exact: item i's vector is column i of B and the query is x_u itself, so x_u . vector_i = score.
        item_vectors, basis = np.ascontiguousarray(weights.T), None
    model = ItemEmbeddingModel(
        version=version or new_version("dlae"),
        algorithm="dlae",
        item_ids=enc.item_ids,
        item_vectors=item_vectors,
        query_basis=basis,
        popularity=popularity,
        params={
            "lambda": lam,
            "dropout": dropout,
            "seed": seed,
            "grid": [list(g) for g in grid],
            "serving_rank": int(item_vectors.shape[1]) if basis is not None else 0,
        },
        metrics=metrics,
        trained_at=datetime.now(UTC).isoformat(),
        training_interactions=len(enc.users),
    )
    log.info(
        "model_trained",
        version=model.version,
        items=model.n_items,
        interactions=len(enc.users),
        lam=lam,
        dropout=dropout,
        **{k: round(v, 4) for k, v in metrics.items()},
    )
    return model
