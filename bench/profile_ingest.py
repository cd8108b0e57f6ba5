"""Profile ingest benchmark.

1. Events/s applied by the profile consumer (identity resolution, aggregates, timeline, segments,
   republish on the resolved topic, ledger) on SQLite and on PostgreSQL: MovieLens 100k (identify +
   ratings) and CDNOW master (purchases) are published to the broker first, then one consumer drains
   them; the rate is events / (end of the last batch - start of the first).
   Afterwards every customer's counts and revenue are compared with the source files.
2. Freshness: the service runs under uvicorn with its consumer; events are published at 1,000/s and
   every 50th is a probe for a new customer; p50/p99 of publish -> visible via GET /customers/{id}.

    .venv/bin/python bench/profile_ingest.py [--limit N] [--skip-postgres] [--steps]

``--steps`` also prints the consumer thread's CPU per event in each step of a batch (``time.thread_time``
around each, so other processes on a shared machine count less than in the per-CPU-second rate).

Writes bench/results/profile_ingest.json (sqlite_events_per_s, postgres_events_per_s, freshness_p99_ms, ...).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import kafka
import numpy as np
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import text

from services.profile import repository
from services.profile import service as profile_service
from services.profile.consumers import INTERACTION_EVENT_TYPES, interactions_handler
from services.profile.db import migrate
from services.profile.pii import PiiVault
from services.profile.service import ProfileService
from shared.broker import EmbeddedBroker, free_port
from shared.contracts import CloudEvent, EventTypeName, Topic
from shared.contracts.events import CustomerRef, Purchase
from shared.datasets import cdnow_transactions, movielens_ratings
from shared.db import EventLedger, make_engine
from shared.kafka import EventConsumer, EventPublisher, InboundEvent, ensure_topics
from shared.logging import configure_logging
from shared.replay import cdnow_customer_id, cdnow_events, movielens_customer_id, movielens_events, replay
from shared.runtime import tune_garbage_collection
from shared.settings import KafkaSettings

RESULTS = Path(__file__).parent / "results" / "profile_ingest.json"
PROBE_EVERY = 50  # every 50th event is a probe (a new customer)
POLL_OLDEST = 2
POLL_INTERVAL_S = 0.02
POSTGRES_URL = os.environ.get("CRM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


STEPS = [  # (owner, attribute, key in the results, label)
    (kafka.KafkaConsumer, "poll", "poll", "poll (kafka-python fetch)"),
    (EventConsumer, "process", "process", "whole poll: parse, apply, commit"),
    (EventLedger, "claim", "ledger_claim", "  ledger claim"),
    (profile_service.ProfileService, "apply_interactions", "apply", "  apply (resolve, aggregate, write)"),
    (profile_service._Batch, "_load", "load", "    load profiles and identifiers"),
    (profile_service._Batch, "_flush", "write", "    write the batch"),
    (repository, "update_customers", "update_profiles", "      update profiles"),
    (repository, "insert_customers", "insert_profiles", "      insert profiles"),
    (repository, "insert_timeline", "insert_timeline", "      insert timeline rows"),
    (profile_service.ProfileService, "publish", "publish", "  publish resolved events (acked)"),
    (EventConsumer, "commit", "offset_commit", "  offset commit"),
]
STEP_CPU: dict[str, float] = defaultdict(float)


def time_steps() -> None:
    """Wrap each step of the consumer's batch with a thread-CPU timer (``--steps``)."""
    for owner, name, key, _label in STEPS:
        original = getattr(owner, name)

        def timed(*args: Any, _original: Any = original, _key: str = key, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                STEP_CPU[_key] += time.thread_time() - started

        setattr(owner, name, functools.wraps(original)(timed))


def expected_counts(limit: int | None) -> dict[str, tuple[int, float]]:
    """(events, revenue) per customer. Whole data sets: straight from the source files (ratings + one
    identify per MovieLens user; CDNOW transactions and amounts). With --limit: from the events sent."""
    result: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    if limit is None:
        for r in movielens_ratings():
            result[movielens_customer_id(r.user_id)][0] += 1
        for cid in list(result):
            result[cid][0] += 1  # the identify event the replay sends per user
        for t in cdnow_transactions():
            entry = result[cdnow_customer_id(t.customer_id)]
            entry[0] += 1
            entry[1] += t.amount
    else:
        for e in all_events(limit):
            entry = result[e.data["customer"]["customer_id"]]
            entry[0] += 1
            entry[1] += e.data.get("amount", 0.0)
    return {k: (int(v[0]), float(v[1])) for k, v in result.items()}


_EVENTS: list[CloudEvent] | None = None


def all_events(limit: int | None) -> list[CloudEvent]:
    global _EVENTS
    if _EVENTS is None:
        _EVENTS = [e.event for e in movielens_events()] + [e.event for e in cdnow_events()]
    return _EVENTS[:limit] if limit else _EVENTS


def source_totals() -> tuple[int, float]:
    """Ratings + identify events and purchase revenue computed from the raw files (not the replay)."""
    ratings = movielens_ratings()
    users = {r.user_id for r in ratings}
    revenue = sum(t.amount for t in cdnow_transactions())
    return len(ratings) + len(users) + len(cdnow_transactions()), revenue


def consume_rate(kafka: KafkaSettings, url: str, n_events: int, label: str) -> tuple[float, dict[str, Any]]:
    engine = make_engine(url)
    migrate(engine)
    publisher = EventPublisher(kafka, client_id=f"bench-{label}")
    service = ProfileService(PiiVault("bench-key"), publisher)
    inner = interactions_handler(service)
    stamps: list[float] = []
    applied = [0]

    cpu: list[float] = []

    def handler(events: Sequence[InboundEvent], session: Any) -> None:
        if not stamps:
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
        inner(events, session)
        applied[0] += len(events)

    group = f"crm-profile-bench-{label}-{uuid.uuid4().hex[:6]}"
    settings = kafka.model_copy(update={"max_poll_records": 2000})
    consumer = EventConsumer(
        settings=settings, group_id=group, topics=[Topic.INTERACTIONS], handler=handler,
        ledger=EventLedger(engine, group), event_types=INTERACTION_EVENT_TYPES, dead_letters=publisher,
    )  # fmt: skip
    consumer.start()
    deadline = time.monotonic() + 1800
    last_print = 0.0
    while applied[0] < n_events and time.monotonic() < deadline and consumer.running:
        time.sleep(0.05)
        if time.monotonic() - last_print > 5:
            last_print = time.monotonic()
            print(f"  {label}: {applied[0]:,}/{n_events:,} applied")
    end = time.perf_counter()
    cpu_end = time.process_time()
    consumer.stop()
    rate = applied[0] / (end - stamps[0]) if stamps else 0.0
    # CPU seconds this process spent (consumer, parsing, handler, producer threads; not the broker's):
    # on a shared machine this says what the consumer would do with a core of its own.
    cpu_rate = applied[0] / (cpu_end - cpu[0]) if cpu else 0.0
    # Verify: counts and revenue per customer equal what the source files give.
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, event_count, revenue, orders FROM profile_customers")
        ).all()
    publisher.close()
    engine.dispose()
    return rate, {"rows": rows, "applied": applied[0], "cpu_rate": cpu_rate}


def skip_backlog(kafka: KafkaSettings, group: str) -> None:
    """Commit the service group's offsets at the end of the topic: freshness is measured on new
    events, not on the throughput phase's backlog."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.servers(), group_id=group, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(Topic.INTERACTIONS, p)
            for p in consumer.partitions_for_topic(Topic.INTERACTIONS) or []
        ]
        ends = consumer.end_offsets(partitions)
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in ends.items()})
    finally:
        consumer.close()


def freshness(kafka: KafkaSettings, data_dir: str, seconds: float, rate: float) -> list[float]:
    """Run the service as the fleet does (its own uvicorn process), publish at ``rate`` events/s and
    time publish -> visible via GET /customers/{id} for a new customer every 50th event."""
    skip_backlog(kafka, "crm-profile")
    port = free_port()
    env = {
        **os.environ,
        "CRM_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CRM_PROFILE_DATA_DIR": data_dir,
        "CRM_PROFILE_PII_KEY": "bench-key",
        "CRM_PROFILE_BATCH_INTERVAL_S": "0",
        "CRM_PROFILE_ENVIRONMENT": "test",
        "CRM_PROFILE_DATABASE_URL": "",
    }
    command = [sys.executable, "-m", "uvicorn", "services.profile.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            ready_by = time.monotonic() + 120
            status = "not started"
            while True:
                try:
                    answer = client.get("/readyz")
                    if answer.status_code == 200:
                        break
                    status = answer.text
                except httpx.HTTPError as exc:
                    status = repr(exc)
                if time.monotonic() > ready_by or server.poll() is not None:
                    raise RuntimeError(f"the profile service never became ready: {status}")
                time.sleep(0.2)
        time.sleep(3)  # let the consumer group settle before the clock starts
        publisher = EventPublisher(kafka, client_id="bench-fresh", linger_ms=1)
        probes: queue.Queue[tuple[str, float] | None] = queue.Queue()

        def check() -> None:
            pending: list[tuple[str, float]] = []
            done = False
            with httpx.Client(base_url=base, timeout=5) as poller:
                while not done or pending:
                    try:
                        while True:
                            item = probes.get_nowait()
                            if item is None:
                                done = True
                                break
                            pending.append(item)
                    except queue.Empty:
                        pass
                    # Only the oldest few probes are polled (they become visible first), so the poller
                    # stays a small load on the service instead of competing with its consumer.
                    still = []
                    for index, (cid, sent) in enumerate(pending):
                        if index < POLL_OLDEST and poller.get(f"/customers/{cid}").status_code == 200:
                            latencies.append((time.perf_counter() - sent) * 1000)
                        elif time.perf_counter() - sent < 60:
                            still.append((cid, sent))
                    pending = still
                    time.sleep(POLL_INTERVAL_S)

        checker = threading.Thread(target=check)
        checker.start()
        load = iter(list(itertools.islice(cdnow_events(), int(seconds * rate) + 10)))
        run = uuid.uuid4().hex[:6]
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            if n % PROBE_EVERY == 0:
                cid = f"fresh-{run}-{n}"
                event = CloudEvent.new(
                    EventTypeName.PURCHASE,
                    Purchase(customer=CustomerRef(customer_id=cid), order_id=f"o{n}", amount=1.0),
                    source="/bench",
                )
                sent = time.perf_counter()
                publisher.publish(Topic.INTERACTIONS, event, cid)
                probes.put((cid, sent))
            else:
                item = next(load)
                publisher.publish(item.topic, item.event, item.key)
            n += 1
            ahead = n / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        publisher.flush()
        probes.put(None)
        checker.join()
        publisher.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="Only the first N replay events.")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--fresh-seconds", type=float, default=30.0)
    parser.add_argument("--fresh-rate", type=float, default=1000.0)
    parser.add_argument(
        "--steps", action="store_true", help="Print the consumer's CPU per event in each step."
    )
    parser.add_argument(
        "--fresh-only",
        action="store_true",
        help="Only the freshness part; updates its keys in the results file.",
    )
    args = parser.parse_args()
    configure_logging("WARNING", json=False)

    broker = None
    bootstrap = os.environ.get("CRM_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = EmbeddedBroker()
        broker.start()
        bootstrap = broker.bootstrap
    kafka = KafkaSettings(
        bootstrap=bootstrap, partitions=4, session_timeout_ms=6000, heartbeat_interval_ms=1000
    )
    results: dict[str, float] = {
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count() or 0,
    }
    try:
        ensure_topics(kafka, [Topic.INTERACTIONS, Topic.INTERACTIONS_RESOLVED, Topic.SEGMENT_MEMBERSHIP_CHANGED,
                              Topic.CUSTOMER_MERGED, Topic.CUSTOMER_ERASED])  # fmt: skip
        if args.fresh_only:
            results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            results["freshness_load_average_1m_at_start"] = round(os.getloadavg()[0], 2)
            with tempfile.TemporaryDirectory() as tmp:
                latencies = freshness(kafka, f"{tmp}/fresh", args.fresh_seconds, args.fresh_rate)
            if not latencies:
                raise RuntimeError("no probe became visible within 60 s")
            results["freshness_probes"] = len(latencies)
            results["freshness_p50_ms"] = round(float(np.percentile(latencies, 50)), 1)
            results["freshness_p99_ms"] = round(float(np.percentile(latencies, 99)), 1)
            results["freshness_rate_per_s"] = args.fresh_rate
            write(results)
            return
        events = all_events(args.limit)
        expected = expected_counts(args.limit)
        print(f"publishing {len(events):,} events (MovieLens 100k + CDNOW master) ...")
        publisher = EventPublisher(kafka, client_id="bench-load")
        from shared.replay import ReplayEvent

        replay(
            (ReplayEvent(Topic.INTERACTIONS, e, e.data["customer"]["customer_id"]) for e in events),
            publisher, total=len(events), progress=False,
        )  # fmt: skip
        publisher.close()
        if not args.limit:
            n_source, revenue_source = source_totals()
            assert n_source == len(events), (n_source, len(events))
            results["source_revenue"] = round(revenue_source, 2)

        if args.steps:
            time_steps()
        tune_garbage_collection()  # as the service does once started (ServiceRuntime.start)
        targets = [("sqlite", None)]
        if not args.skip_postgres:
            targets.append(("postgres", POSTGRES_URL))
        with tempfile.TemporaryDirectory() as tmp:
            for label, base in targets:
                schema = None
                if base is None:
                    url = f"sqlite:///{tmp}/bench.db"
                else:
                    schema = f"bench_{uuid.uuid4().hex[:8]}"
                    admin = make_engine(base)
                    with admin.begin() as c:
                        c.execute(text(f'CREATE SCHEMA "{schema}"'))
                    url = f"{base}?options=-csearch_path%3D{schema}"
                try:
                    rate, info = consume_rate(kafka, url, len(events), label)
                finally:
                    if schema:
                        with admin.begin() as c:
                            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                        admin.dispose()
                got = {row[0]: (row[1], row[2]) for row in info["rows"]}
                mismatched = sum(
                    1 for cid, (n, revenue) in expected.items()
                    if cid not in got or got[cid][0] != n or abs(got[cid][1] - revenue) > 1e-6
                )  # fmt: skip
                results[f"{label}_events_per_s"] = round(rate, 1)
                results[f"{label}_events_per_cpu_s"] = round(info["cpu_rate"], 1)
                results[f"{label}_customers"] = len(got)
                results[f"{label}_mismatched_customers"] = mismatched
                results[f"{label}_revenue"] = round(sum(v[1] for v in got.values()), 2)
                print(f"  {label}: {rate:,.0f} events/s, {len(got):,} customers, {mismatched} mismatched")
                if args.steps:
                    print(f"  {label}, consumer thread CPU per event:")
                    for _owner, _name, key, step in STEPS:
                        per_event = STEP_CPU[key] / info["applied"] * 1e6
                        print(f"    {step:<42}{per_event:8.2f} us")
                        results[f"{label}_step_us_{key}"] = round(per_event, 2)
                    STEP_CPU.clear()
            results["events"] = len(events)
            print(f"freshness at {args.fresh_rate:.0f} events/s for {args.fresh_seconds:.0f} s ...")
            latencies = freshness(kafka, f"{tmp}/fresh", args.fresh_seconds, args.fresh_rate)
        if not latencies:
            raise RuntimeError("no probe became visible within 60 s")
        results["freshness_probes"] = len(latencies)
        results["freshness_p50_ms"] = round(float(np.percentile(latencies, 50)), 1)
        results["freshness_p99_ms"] = round(float(np.percentile(latencies, 99)), 1)
        results["freshness_rate_per_s"] = args.fresh_rate
    finally:
        if broker is not None:
            broker.stop()

    write(results)


def write(results: dict[str, float]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(f"{'metric':<34}{'value':>14}")
    for key, value in results.items():
        print(f"{key:<34}{value:>14,}")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
