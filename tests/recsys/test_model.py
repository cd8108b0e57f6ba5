"""The model core without the web: split, metrics, FAISS index, persistence, quality on ml-100k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.recsys.data import load_movielens_100k
from services.recsys.evaluation import ranking_metrics, stratified_split
from services.recsys.index import ItemIndex
from services.recsys.model import ItemEmbeddingModel
from services.recsys.service import ModelStore
from services.recsys.training import train_dlae
from tests.recsys.conftest import FAST_GRID


def test_stratified_split_is_per_user_and_seeded() -> None:
    users = np.repeat(np.arange(50), 20)
    mask = stratified_split(users, 0.75, seed=42)
    assert all(mask[users == u].sum() == 15 for u in range(50))
    assert np.array_equal(mask, stratified_split(users, 0.75, seed=42))
    assert not np.array_equal(mask, stratified_split(users, 0.75, seed=43))


def test_ranking_metrics_match_a_hand_computation() -> None:
    # Hits at ranks 1 and 3 of 3 relevant items: DCG = 1 + 1/log2(4); IDCG = 1 + 1/log2(3) + 1/log2(4).
    metrics = ranking_metrics([[1, 9, 2, 8]], [{1, 2, 3}], k=4)
    assert metrics.ndcg_at_k == pytest.approx((1 + 0.5) / (1 + 1 / np.log2(3) + 0.5))
    assert metrics.precision_at_k == pytest.approx(2 / 4)
    assert metrics.recall_at_k == pytest.approx(2 / 3)
    assert metrics.map == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_ivf_index_recall_against_exact_search() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 32)).astype(np.float32)
    items = (centres[rng.integers(0, 200, 20_000)] + 0.3 * rng.normal(size=(20_000, 32))).astype(np.float32)
    queries = (centres[rng.integers(0, 200, 200)] + 0.3 * rng.normal(size=(200, 32))).astype(np.float32)
    ivf = ItemIndex(items, flat_max_items=1000, nprobe=16, use_gpu=False)
    exact = ItemIndex(items, use_gpu=False)
    assert (ivf.kind, exact.kind) == ("ivf", "flat")
    _, approx_ids = ivf.search(queries, 10)
    _, exact_ids = exact.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_ids, exact_ids, strict=True)])
    assert recall >= 0.9


def test_model_round_trip_and_explanations(movielens_model_dir: Path) -> None:
    store = ModelStore(movielens_model_dir, keep=5)
    version = store.current_version()
    assert version is not None
    model = store.load(version)
    model.build_index(use_gpu=False)
    copy = ItemEmbeddingModel.load(movielens_model_dir / version)
    copy.build_index(use_gpu=False)
    history = {model.item_position[i]: 1.0 for i in ("movie-50", "movie-181", "movie-172")}
    [first] = model.recommend_batch([history], 10, explain=3)
    [second] = copy.recommend_batch([history], 10, explain=3)
    assert [s.item_index for s in first] == [s.item_index for s in second]
    assert not {s.item_index for s in first} & set(history)
    # FAISS's inner product is the model's score x_u . B[:, i], and "because" items come from the history.
    for scored in first:
        assert scored.score == pytest.approx(
            sum(model.item_vectors[scored.item_index, j] for j in history), rel=1e-4
        )
        assert scored.because
        assert {j for j, _ in scored.because} <= set(history)


def test_dlae_through_faiss_beats_popularity_on_movielens() -> None:
    users, items, _, _ = load_movielens_100k()
    u, i = np.asarray(users), np.asarray(items)
    train = stratified_split(u, 0.75, seed=42)
    model = train_dlae(u[train].tolist(), i[train].tolist(), grid=FAST_GRID)
    model.build_index(use_gpu=False)
    customers = sorted(set(users))
    histories: dict[str, dict[int, float]] = {c: {} for c in customers}
    relevant: dict[str, set[str]] = {c: set() for c in customers}
    for cu, it in zip(u[train], i[train], strict=True):
        histories[cu][model.item_position[it]] = 1.0
    for cu, it in zip(u[~train], i[~train], strict=True):
        relevant[cu].add(it)
    recs = model.recommend_batch([histories[c] for c in customers], 10)
    ours = ranking_metrics(
        [[model.item_ids[s.item_index] for s in r] for r in recs], [relevant[c] for c in customers]
    )
    popular = [model.item_ids[j] for j in np.argsort(-model.popularity, kind="stable")]
    pop = ranking_metrics(
        [[x for x in popular if model.item_position[x] not in histories[c]][:10] for c in customers],
        [relevant[c] for c in customers],
    )
    assert ours.ndcg_at_k >= 0.47
    assert ours.ndcg_at_k > pop.ndcg_at_k + 0.15


def test_low_rank_serving_ranks_like_the_exact_model() -> None:
    users, items, _, _ = load_movielens_100k()
    # The 600 most popular items keep the factorisation quick; rank 300 of 600 as in production (768 of 1682).
    exact = train_dlae(users, items, grid=FAST_GRID, max_items=600)
    low_rank = train_dlae(users, items, grid=FAST_GRID, max_items=600, serving_rank=300)
    assert (low_rank.dim, exact.dim) == (300, 600)
    exact.build_index(use_gpu=False)
    low_rank.build_index(use_gpu=False)
    by_customer: dict[str, dict[int, float]] = {}
    for customer, item in zip(users, items, strict=True):
        if item in exact.item_position:
            by_customer.setdefault(customer, {})[exact.item_position[item]] = 1.0
    sample = [by_customer[c] for c in sorted(by_customer)[:200]]
    exact_recs = exact.recommend_batch(sample, 10)
    low_recs = low_rank.recommend_batch(sample, 10, explain=3)
    overlap = np.mean(
        [
            len({s.item_index for s in a} & {s.item_index for s in b}) / 10
            for a, b in zip(exact_recs, low_recs, strict=True)
        ]
    )
    assert overlap >= 0.9
    assert all(s.because for row in low_recs for s in row)
