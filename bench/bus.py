"""Events/s through the bus (produce -> consume -> idempotent handler -> ledger -> commit) next to a raw
kafka-python consume loop (poll -> json.loads -> commit) over the same events, in the same run,
alternating for --rounds rounds. ``ratio`` is the median bus rate over the median raw rate;
``round_ratio_min``/``_max`` are the spread of each round's bus rate over its raw rate.

    .venv/bin/python bench/bus.py [--events 50000] [--rounds 9]

Both loops are timed from their first record to their last, so consumer-group join time is excluded
for both. Writes bench/results/bus.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer

from shared.broker import EmbeddedBroker
from shared.contracts import CloudEvent, EventTypeName
from shared.contracts.events import CustomerRef, ProductView
from shared.db import EventLedger, make_engine
from shared.kafka import EventConsumer, EventPublisher, ensure_topics
from shared.runtime import tune_garbage_collection
from shared.settings import KafkaSettings

RESULTS = Path(__file__).parent / "results"


def produce(settings: KafkaSettings, topic: str, count: int) -> float:
    publisher = EventPublisher(settings)
    started = time.perf_counter()
    for i in range(count):
        customer = f"c{i % 1000}"
        event = CloudEvent.new(
            EventTypeName.PRODUCT_VIEW,
            ProductView(customer=CustomerRef(customer_id=customer), item_id=f"item-{i % 1700}"),
            source="/bench",
        )
        publisher.publish(topic, event, customer)
    publisher.flush()
    elapsed = time.perf_counter() - started
    publisher.close()
    return count / elapsed


def raw_loop(settings: KafkaSettings, topic: str, count: int, group: str) -> float:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.servers(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_records=settings.max_poll_records,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    seen = 0
    first = 0.0
    while seen < count:
        records = consumer.poll(timeout_ms=200)
        if not records:
            continue
        if not first:
            first = time.perf_counter()
        for messages in records.values():
            for message in messages:
                json.loads(message.value)
                seen += 1
        consumer.commit()
    elapsed = time.perf_counter() - first
    consumer.close()
    return count / elapsed


def bus_loop(settings: KafkaSettings, topic: str, count: int, db_dir: str, group: str) -> float:
    handled = 0
    first = 0.0
    done = threading.Event()

    def handler(events, session):  # type: ignore[no-untyped-def]
        nonlocal handled, first
        if not first:
            first = time.perf_counter()
        handled += len(events)
        if handled >= count:
            done.set()

    engine = make_engine(f"sqlite:///{db_dir}/{group}.db")
    consumer = EventConsumer(
        settings=settings,
        group_id=group,
        topics=[topic],
        handler=handler,
        ledger=EventLedger(engine, group),
    ).start()
    done.wait(timeout=600)
    elapsed = time.perf_counter() - first
    consumer.stop()
    engine.dispose()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="Alternating raw/bus rounds; medians are reported."
    )
    args = parser.parse_args()
    bootstrap = os.environ.get("CRM_KAFKA_BOOTSTRAP")
    broker = None if bootstrap else EmbeddedBroker().start()
    settings = KafkaSettings(bootstrap=bootstrap or broker.bootstrap, partitions=4)  # type: ignore[union-attr]
    topic = f"bench.bus.{int(time.time())}"
    try:
        ensure_topics(settings, [topic])
        tune_garbage_collection()  # what every service does once started (ServiceRuntime.start)
        produce_rate = produce(settings, topic, args.events)
        raws, buses = [], []
        with tempfile.TemporaryDirectory() as db_dir:
            for round_ in range(args.rounds):
                raws.append(raw_loop(settings, topic, args.events, f"bench-raw-{round_}"))
                buses.append(bus_loop(settings, topic, args.events, db_dir, f"bench-bus-{round_}"))
        raw, bus = statistics.median(raws), statistics.median(buses)
    finally:
        if broker:
            broker.stop()
    results = {
        "events": args.events,
        "rounds": args.rounds,
        "max_poll_records": settings.max_poll_records,
        "produce_events_per_s": round(produce_rate),
        "raw_events_per_s": round(raw),
        "bus_events_per_s": round(bus),
        "ratio": round(bus / raw, 3),
        # Each round's bus run against the raw run just before it: how much the ratio moves between rounds.
        "round_ratio_min": round(min(b / r for r, b in zip(raws, buses, strict=True)), 3),
        "round_ratio_max": round(max(b / r for r, b in zip(raws, buses, strict=True)), 3),
    }
    print(f"{'measure':<24}{'value':>12}")
    for key, value in results.items():
        print(f"{key:<24}{value:>12}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bus.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
