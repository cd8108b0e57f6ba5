"""Service-side latency of GET /recommendations/{customer_id}, and recall of the approximate index.

Two catalogs, each served by the real app (``create_app``, in process, consumers off) with customers'
histories in its SQLite database:

* small: the DLAE model trained on ml-100k (1,682 items), exact ``IndexFlatIP``, the 943 real customers;
* 1M: a synthetic catalog of 1,000,000 items x 64 dims (clustered, like learned embeddings), served by the
  same ``ItemIndex`` class as IVF (inner product), customers with 20-item histories.

Latency is measured around the handler's work inside the app (what the route runs in the thread pool:
history lookup, query, FAISS search, filtering, explanations) and, for reference, the whole in-process
HTTP round trip. recall@10 compares the IVF answer with exact ``IndexFlatIP`` search for the same queries
(the customers' own; and, as a harder case, histories of 20 random items).

    .venv/bin/python bench/recsys_latency.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from services.recsys.app import create_app
from services.recsys.data import load_movielens_100k
from services.recsys.index import ItemIndex
from services.recsys.model import ItemEmbeddingModel
from services.recsys.repository import NewInteraction
from services.recsys.service import ModelStore, RecsysService
from services.recsys.settings import RecsysSettings
from services.recsys.training import train_dlae
from shared.db import unit_of_work

RESULTS = Path(__file__).parent / "results" / "recsys_latency.json"


def seed(service: RecsysService, pairs: list[tuple[str, str]]) -> None:
    now = datetime.now(UTC)
    rows = [NewInteraction(f"b-{n}", c, i, "rating", 1.0, now) for n, (c, i) in enumerate(pairs)]
    with unit_of_work(service.session_factory) as session:
        service.record_interactions(session, rows)


def measure(
    client: TestClient, service: RecsysService, customers: list[str], n: int, rng: np.random.Generator
) -> dict[str, float]:
    # First request per customer: the history is read from the database (after an event, the next
    # request for that customer pays this again). Then the steady state, histories cached.
    cold: list[float] = []
    for customer in customers:
        started = time.perf_counter()
        service.recommend_for_customer(customer, 10)
        cold.append(time.perf_counter() - started)
    picks = [customers[j] for j in rng.integers(0, len(customers), n)]
    for customer in picks[:50]:  # warm up the HTTP path
        client.get(f"/recommendations/{customer}")
    inner: list[float] = []
    cpu: list[float] = []
    outer: list[float] = []
    for customer in picks:
        started, started_cpu = time.perf_counter(), time.thread_time()
        service.recommend_for_customer(customer, 10)
        inner.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
        started = time.perf_counter()
        response = client.get(f"/recommendations/{customer}", params={"k": 10})
        outer.append(time.perf_counter() - started)
        if response.status_code != 200 or len(response.json()["items"]) != 10:
            raise RuntimeError(f"unexpected answer: {response.text}")
    ms = 1000 * np.asarray(inner)
    cpu_ms = 1000 * np.asarray(cpu)
    http = 1000 * np.asarray(outer)
    cold_ms = 1000 * np.asarray(cold)
    return {
        "cold_p50_ms": float(np.percentile(cold_ms, 50)),
        "cold_p99_ms": float(np.percentile(cold_ms, 99)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
        "cpu_p99_ms": float(np.percentile(cpu_ms, 99)),
        "http_p50_ms": float(np.percentile(http, 50)),
        "http_p99_ms": float(np.percentile(http, 99)),
    }


def small_catalog(root: Path, requests: int, rng: np.random.Generator) -> dict[str, Any]:
    users, items, _, _ = load_movielens_100k()
    settings = RecsysSettings(data_dir=str(root / "small"), consume_events=False, auto_train=False)
    ModelStore(settings.models_dir(), 5).publish(
        train_dlae(users, items, grid=[(300.0, 0.55)], serving_rank=settings.serving_rank)
    )
    with TestClient(create_app(settings)) as client:
        service: RecsysService = client.app.state.recsys_service  # type: ignore[attr-defined]
        seed(service, list(zip(users, items, strict=True)))
        stats = measure(client, service, sorted(set(users)), requests, rng)
        stats["items"] = float(service.model.n_items) if service.model else 0.0
        stats["index"] = service.model.index.kind if service.model and service.model.index else "?"  # type: ignore[assignment]
    return stats


def synthetic_model(n_items: int, dim: int, clusters: int, rng: np.random.Generator) -> ItemEmbeddingModel:
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    assignment = rng.integers(0, clusters, n_items)
    vectors = centres[assignment]
    vectors += 0.5 * rng.standard_normal((n_items, dim), dtype=np.float32)
    return ItemEmbeddingModel(
        version="synthetic-1m",
        algorithm="synthetic-factors",
        item_ids=[f"item-{j}" for j in range(n_items)],
        item_vectors=vectors,
        query_basis=vectors,  # a factor model: the query is the sum of the history's item vectors
        popularity=rng.random(n_items, dtype=np.float32),
    )


def large_catalog(
    root: Path, n_items: int, requests: int, recall_queries: int, rng: np.random.Generator
) -> dict[str, Any]:
    import faiss

    settings = RecsysSettings(data_dir=str(root / "large"), consume_events=False, auto_train=False)
    started = time.perf_counter()
    model = synthetic_model(n_items, 64, 2000, rng)
    print(f"synthetic catalog {n_items:,} x 64 in {time.perf_counter() - started:.1f}s; building IVF ...")
    started = time.perf_counter()
    faiss.omp_set_num_threads(2)  # building is a batch job; the app sets 1 thread per search
    model.build_index(**settings.index_options())
    build_s = time.perf_counter() - started
    assert model.index is not None
    print(f"index {model.index.describe()} built in {build_s:.1f}s")
    customers = [f"cust-{c}" for c in range(1000)]
    pairs = []
    for customer in customers:
        # A customer's 20 items come from two "tastes": items whose vectors are near each other.
        anchors = rng.integers(0, n_items, 2)
        for anchor in anchors:
            near = model.index.search(model.item_vectors[anchor][None, :], 10)[1][0]
            pairs.extend((customer, model.item_ids[int(j)]) for j in near)
    with TestClient(create_app(settings)) as client:
        service: RecsysService = client.app.state.recsys_service  # type: ignore[attr-defined]
        service.serve(model)
        seed(service, pairs)
        stats = measure(client, service, customers, requests, rng)
        # recall@10 of IVF against exact search, on the customers' real queries (history excluded).
        exact = ItemIndex(model.item_vectors, flat_max_items=n_items, use_gpu=False, threads=os.cpu_count())
        hits = 0
        sample = customers[:recall_queries]
        for customer in sample:
            history = {model.item_position[i]: 1.0 for i in service.history(customer)}
            query = model.query(history)[None, :]
            depth = 10 + len(history)
            approx = [int(j) for j in model.index.search(query, depth)[1][0] if int(j) not in history][:10]
            truth = [int(j) for j in exact.search(query, depth)[1][0] if int(j) not in history][:10]
            hits += len(set(approx) & set(truth))
        stats["recall_at_10"] = hits / (10 * len(sample))
        # A harder mix for IVF: histories of 20 random items (no taste structure), queries point anywhere.
        hits = 0
        for _ in range(recall_queries):
            history = {int(j): 1.0 for j in rng.integers(0, n_items, 20)}
            query = model.query(history)[None, :]
            approx = [int(j) for j in model.index.search(query, 30)[1][0] if int(j) not in history][:10]
            truth = [int(j) for j in exact.search(query, 30)[1][0] if int(j) not in history][:10]
            hits += len(set(approx) & set(truth))
        stats["recall_at_10_random"] = hits / (10 * recall_queries)
        stats["build_s"] = build_s
        stats["nlist"] = float(model.index.nlist)
        stats["index"] = model.index.kind
        stats["nprobe"] = float(model.index.nprobe)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--load", action="store_true", help="Print the machine's load average with the results."
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--recall-queries", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        small = small_catalog(Path(tmp), args.requests, rng)
        large = large_catalog(Path(tmp), args.items, args.requests, args.recall_queries, rng)
    print(f"\nGET /recommendations/{{customer_id}}?k=10, {args.requests} requests each, 1 FAISS thread")
    print(
        f"{'catalog':<24}{'index':<6}{'p50 ms':>8}{'p99 ms':>8}{'cpu p50':>9}{'cpu p99':>9}"
        f"{'http p50':>10}{'http p99':>10}{'recall@10':>11}"
    )
    for name, kind, r, recall in (
        ("ml-100k (1,682 items)", "flat", small, "exact"),
        (f"synthetic {args.items:,}", large["index"], large, f"{large['recall_at_10']:.3f}"),
    ):
        print(
            f"{name:<24}{kind:<6}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['cpu_p50_ms']:>9.2f}{r['cpu_p99_ms']:>9.2f}"
            f"{r['http_p50_ms']:>10.2f}{r['http_p99_ms']:>10.2f}{recall:>11}"
        )
    for name, r in (("1.7k", small), ("1M", large)):
        print(
            f"{name}: first request per customer (history read from SQLite): "
            f"p50 {r['cold_p50_ms']:.2f} ms, p99 {r['cold_p99_ms']:.2f} ms"
        )
    print(
        "p50/p99: wall time of the route's work, histories cached; cpu: that thread's CPU time (leaves out time the OS gave to "
        "other processes); http: in-process HTTP round trip through TestClient"
    )
    print(
        f"recall@10 at {args.items:,} items for histories of 20 random items (no taste structure): {large['recall_at_10_random']:.3f}"
    )
    load_after = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, 1-min load average {load_before:.1f} before, {load_after:.1f} after"
    )
    out = {
        "p50_ms_small": small["p50_ms"],
        "p99_ms_small": small["p99_ms"],
        "cold_history_p50_ms_small": small["cold_p50_ms"],
        "cold_history_p99_ms_small": small["cold_p99_ms"],
        "cpu_p50_ms_small": small["cpu_p50_ms"],
        "cpu_p99_ms_small": small["cpu_p99_ms"],
        "http_p50_ms_small": small["http_p50_ms"],
        "http_p99_ms_small": small["http_p99_ms"],
        "p50_ms_1m": large["p50_ms"],
        "p99_ms_1m": large["p99_ms"],
        "cold_history_p50_ms_1m": large["cold_p50_ms"],
        "cold_history_p99_ms_1m": large["cold_p99_ms"],
        "cpu_p50_ms_1m": large["cpu_p50_ms"],
        "cpu_p99_ms_1m": large["cpu_p99_ms"],
        "http_p50_ms_1m": large["http_p50_ms"],
        "http_p99_ms_1m": large["http_p99_ms"],
        "recall_at_10_1m": large["recall_at_10"],
        "recall_at_10_1m_random_histories": large["recall_at_10_random"],
        "items_1m": float(args.items),
        "ivf_nlist_1m": large["nlist"],
        "ivf_nprobe_1m": large["nprobe"],
        "ivf_build_s_1m": large["build_s"],
        "cpus": float(os.cpu_count() or 0),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
