"""Gateway benchmark: the customer 360 next to a hello-world endpoint, ingest throughput, end to end.

    .venv/bin/python bench/gateway.py                      # real services behind the gateway
    .venv/bin/python bench/gateway.py --services profile   # only some real services (others degraded)

Starts the embedded broker (or uses CRM_KAFKA_BOOTSTRAP), the real services as uvicorn processes (each
trains its start-up model), two gateways (the configured one, whose 360 cache is on, and one with the
cache off) and a hello-world FastAPI app as their own uvicorn processes, seeds ``--customers`` customers
with some history through the gateway, then measures from this process with a lean keep-alive HTTP/1.1
client (asyncio protocol, pre-built requests: ~tens of microseconds of client CPU per request, where
httpx spent more than the gateway under test) used the same way for every target:

* ``c360_rps`` / ``hello_rps``: closed-loop req/s of ``GET /v1/customers/{id}`` (each request a customer
  drawn uniformly from the seeded ones) and ``GET /hello`` at the same concurrency, with p50/p99;
  ``ratio`` = c360_rps / hello_rps (target >= 0.4); ``c360_cache_hit_share`` is the share of those 360
  reads the gateway served from its cache (its own /metrics counter); the ``uncached_*`` figures are the
  same measurement against the gateway with the cache off (every read fans out to the four services);
* ``c360_p99_ms_at_200rps``: p99 latency of the 360 under an open-loop 200 req/s, measured from each
  request's scheduled send time (target < 50 ms); ``c360_p99_ms_at_200rps_with_events``: the same
  while ``--mixed-events-per-s`` identify events about the seeded customers arrive through the gateway
  (each evicts that customer's cached 360 once the profile service has applied it);
* ``ingest_events_per_s``: events accepted (202, acknowledged by the broker) through batched
  ``POST /v1/events`` (target >= 20,000/s); the bodies are serialised before the clock starts;
* ``end_to_end_events_per_s``: identify events for new customers from the first POST until the profile
  service's consumer has applied them all (its customer count says so).

``client_cpu_share`` says how much of one core this process (the load generator) used in each phase.
Writes bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from _kit import (
    ClientCpu,
    Connection,
    closed_loop,
    connect,
    get_request,
    open_loop,
    post_request,
    wait_ready,
)
from fastapi import FastAPI

standin_app = FastAPI()


@standin_app.get("/customers/{customer_id}")
async def standin_profile(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "traits": {"name": "Ada"}, "segments": ["champions"], "clv": {"p_alive": 0.9}}


@standin_app.get("/recommendations/{customer_id}")
async def standin_recommendations(customer_id: str, k: int = 10) -> dict[str, Any]:
    return {"customer_id": customer_id, "items": [{"item_id": str(i), "score": 1.0} for i in range(k)]}


@standin_app.get("/churn/{customer_id}")
async def standin_churn(customer_id: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "probability": 0.2, "band": "low", "reasons": []}


@standin_app.get("/customers/{customer_id}/sentiment")
async def standin_sentiment(customer_id: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "count": 0, "mean_score": None, "items": []}


ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("profile", "recsys", "sentiment", "churn")


def spawn(target: str, port: int, env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--log-level", "warning", *extra],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def ingest_bodies(batch: int, variants: int) -> list[bytes]:
    """``variants`` different batches of product views (500 customers per worker), serialised once."""
    bodies = []
    for v in range(variants):
        events = [
            {
                "type": "product_view",
                "customer": {"customer_id": f"bench-{v}-{i % 500}"},
                "item_id": f"{(v * batch + i) % 1682}",
            }
            for i in range(batch)
        ]
        bodies.append(json.dumps(events).encode())
    return bodies


async def ingest(
    url: str, headers: dict[str, str], batch: int, concurrency: int, duration_s: float
) -> dict[str, float]:
    requests = [post_request("/v1/events", headers, body) for body in ingest_bodies(batch, 16)]
    accepted = 0
    failures = 0
    connections = [await connect(url) for _ in range(concurrency)]

    async def worker(w: int, connection: Connection) -> None:
        nonlocal accepted, failures
        n = w
        while time.perf_counter() < stop:
            status, body = await connection.send(requests[n % len(requests)])
            n += 1
            if status == 202:
                accepted += json.loads(body)["accepted"]
            else:
                failures += 1

    with ClientCpu() as cpu:
        stop = time.perf_counter() + duration_s
        started = time.perf_counter()
        await asyncio.gather(*(worker(w, c) for w, c in enumerate(connections)))
        elapsed = time.perf_counter() - started
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()
    return {
        "events_per_s": accepted / elapsed,
        "accepted": accepted,
        "failed_requests": failures,
        "client_cpu_share": cpu.share,
    }


async def send_events(url: str, requests: list[bytes], rate: float, stop: asyncio.Event) -> int:
    """POST one event at a time at ``rate`` per second until ``stop``; returns how many got 202."""
    connection = await connect(url)
    pick = random.Random(13).choice
    accepted = 0
    t0 = time.perf_counter()
    i = 0
    while not stop.is_set():
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        status, _ = await connection.send(pick(requests))
        accepted += status == 202
        i += 1
    connection.transport.close()
    return accepted


async def open_loop_with_events(
    gateway: str, reads: list[bytes], writes: list[bytes], rate: float, events_per_s: float, duration_s: float
) -> dict[str, float]:
    """The open-loop 360 run while events about the same customers arrive through the gateway: each
    evicts that customer's cached 360 once the profile service has applied it."""
    stop = asyncio.Event()
    sender = asyncio.create_task(send_events(gateway, writes, events_per_s, stop))
    await asyncio.sleep(2)  # the first events are through the fleet
    result = await open_loop(gateway, reads, rate, duration_s)
    stop.set()
    result["events_sent"] = await sender
    return result


async def warm_up(url: str, requests: list[bytes], concurrency: int = 8) -> None:
    """Send every request once (``concurrency`` at a time)."""
    connections = [await connect(url) for _ in range(concurrency)]

    async def worker(connection: Connection, share: list[bytes]) -> None:
        for request in share:
            await connection.send(request)

    await asyncio.gather(*(worker(c, requests[i::concurrency]) for i, c in enumerate(connections)))
    for connection in connections:
        connection.transport.close()


async def c360_cache_counts(gateway: str) -> dict[str, float]:
    """The gateway's own count of 360 reads by cache outcome (hit, miss, bypass)."""
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{gateway}/metrics")).text
    counts = {"hit": 0.0, "miss": 0.0, "bypass": 0.0}
    for match in re.finditer(r'^crm_gateway_c360_cache_total\{outcome="(\w+)"\} (\S+)$', text, re.M):
        counts[match.group(1)] = float(match.group(2))
    return counts


async def downstream_mean_ms(gateway: str) -> dict[str, float]:
    """Mean latency of the gateway's successful calls to each service, from its own metrics."""
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{gateway}/metrics")).text
    sums: dict[str, list[float]] = {}
    pattern = (
        r'^crm_gateway_downstream_seconds_(sum|count)\{downstream="(\w+)",outcome="ok",route="[^"]*"\} (\S+)$'
    )
    for match in re.finditer(pattern, text, re.M):
        kind, name, value = match.groups()
        sums.setdefault(name, [0.0, 0.0])[kind == "count"] += float(value)
    return {name: round(total / count * 1000, 1) for name, (total, count) in sums.items() if count}


def hit_share(before: dict[str, float], after: dict[str, float]) -> float:
    reads = sum(after.values()) - sum(before.values())
    return (after["hit"] - before["hit"]) / reads if reads else 0.0


def bench_record() -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/bench",
            "type": "crm.product_view.v1",
            "time": "2026-01-01T00:00:00Z",
            "data": {"customer": {"customer_id": "bench-1"}, "item_id": "50"},
        }
    ).encode()


def raw_kafka_python(bootstrap: str, n: int) -> float:
    """kafka-python alone (the fleet's EventPublisher settings), acks=all, the same record sizes."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=1,
    )
    value = bench_record()
    started = time.perf_counter()
    futures = [
        producer.send("crm.interactions.received.v1", value=value, key=f"c{i % 500}".encode())
        for i in range(n)
    ]
    for future in futures:
        future.get(timeout=60)
    elapsed = time.perf_counter() - started
    producer.close()
    return n / elapsed


def raw_librdkafka(bootstrap: str, n: int) -> float:
    """confluent-kafka alone with the gateway's ingest producer settings, acks=all, same records."""
    from services.gateway.producer import IngestProducer
    from shared.settings import KafkaSettings

    async def run() -> float:
        producer = IngestProducer(KafkaSettings(bootstrap=bootstrap), client_id="bench", message_timeout_s=60)
        value = bench_record()
        records = [("crm.interactions.received.v1", value, f"c{i % 500}".encode()) for i in range(n)]
        started = time.perf_counter()
        await producer.produce_batch(records, asyncio.get_running_loop(), 60)
        elapsed = time.perf_counter() - started
        producer.close()
        return n / elapsed

    return asyncio.run(run())


def ingest_path_in_process(bootstrap: str, n: int, batch: int) -> dict[str, float]:
    """The gateway's own ingest code (parse, validate, serialise, produce, await acks) without HTTP, one
    batch at a time; also its CPU microseconds per event (load-insensitive)."""
    from services.gateway.ingest import parse_batch
    from services.gateway.producer import IngestProducer
    from shared.settings import KafkaSettings

    bodies = ingest_bodies(batch, 4)

    async def run() -> dict[str, float]:
        producer = IngestProducer(KafkaSettings(bootstrap=bootstrap), client_id="bench", message_timeout_s=60)
        loop = asyncio.get_running_loop()
        rounds = n // batch
        started, cpu = time.perf_counter(), time.process_time()
        for r in range(rounds):
            parsed = parse_batch(json.loads(bodies[r % len(bodies)]), source="/bench", id_seed=None)
            await producer.produce_batch(parsed.records(), loop, 60)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        started = time.process_time()
        for r in range(rounds):
            parse_batch(json.loads(bodies[r % len(bodies)]), source="/bench", id_seed=None)
        parse_cpu = time.process_time() - started
        producer.close()
        events = rounds * batch
        return {
            "events_per_s": events / elapsed,
            "cpu_us_per_event": cpu / events * 1e6,
            "parse_cpu_us_per_event": parse_cpu / events * 1e6,
        }

    return asyncio.run(run())


async def end_to_end(
    gateway: str, profile: str, headers: dict[str, str], n: int, batch: int
) -> dict[str, float]:
    import httpx

    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        base = (await client.get(f"{profile}/customers", params={"limit": 1})).json()["total"]
        started = time.perf_counter()
        for start in range(0, n, batch):
            events = [
                {"type": "identify", "customer": {"customer_id": f"e2e-{run}-{i}"}, "traits": {"bench": True}}
                for i in range(start, min(n, start + batch))
            ]
            response = await client.post(f"{gateway}/v1/events", json=events)
            response.raise_for_status()
        sent = time.perf_counter() - started
        deadline = time.monotonic() + 600
        total = base
        while time.monotonic() < deadline:
            total = (await client.get(f"{profile}/customers", params={"limit": 1})).json()["total"]
            if total >= base + n:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
    applied = total - base
    return {"events_per_s": applied / elapsed, "applied": applied, "send_s": sent, "elapsed_s": elapsed}


def history(customer: str, i: int) -> list[dict[str, Any]]:
    """Some history per customer, so every part of the 360 has something to show."""
    events: list[dict[str, Any]] = [
        {
            "type": "identify",
            "customer": {"customer_id": customer, "email": f"{customer}@example.com"},
            "traits": {"name": "Ada"},
        }
    ]
    for j in range(3):
        item = str(1 + (i * 7 + j * 13) % 1682)
        events.append({"type": "rating", "customer": {"customer_id": customer}, "item_id": item, "rating": 4})
        events.append(
            {
                "type": "purchase",
                "customer": {"customer_id": customer},
                "order_id": f"{customer}-{j}",
                "amount": 10.0 + j,
                "items": [{"item_id": item, "price": 10.0 + j}],
            }
        )
    if i % 5 == 0:
        events.append(
            {"type": "review", "customer": {"customer_id": customer}, "text": "Great service, fast delivery."}
        )
    return events


async def seed(gateway: str, profile: str | None, headers: dict[str, str], customers: list[str]) -> None:
    """Every customer's history through the gateway, then wait until the profile knows them all."""
    import httpx

    events = [e for i, c in enumerate(customers) for e in history(c, i)]
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        for start in range(0, len(events), 1000):
            (await client.post(f"{gateway}/v1/events", json=events[start : start + 1000])).raise_for_status()
        if profile:
            deadline = time.monotonic() + 600
            for customer in customers[::-1]:
                while time.monotonic() < deadline:
                    if (await client.get(f"{profile}/customers/{customer}")).status_code == 200:
                        break
                    await asyncio.sleep(0.2)
        await asyncio.sleep(5)  # let the other consumers apply the history too


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--services", default=",".join(SERVICES), help="Real services to start behind the gateway."
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--customers", type=int, default=500, help="Seeded customers the 360 reads are spread over."
    )
    parser.add_argument(
        "--mixed-events-per-s",
        type=float,
        default=20.0,
        help="Events about the seeded customers sent during the second open-loop 360 run.",
    )
    parser.add_argument("--ingest-batch", type=int, default=1000)
    parser.add_argument("--ingest-concurrency", type=int, default=4)
    parser.add_argument("--e2e-events", type=int, default=20_000)
    parser.add_argument("--ready-timeout", type=float, default=420.0)
    parser.add_argument(
        "--standins",
        action="store_true",
        help="Put instant stand-in apps behind the gateway instead of the real services: measures the "
        "gateway's own fan-out cost (no end-to-end figure then). Results go to gateway_standins.json.",
    )
    args = parser.parse_args()
    services = [] if args.standins else [s for s in args.services.split(",") if s]

    from shared.auth import generate_api_key
    from shared.broker import EmbeddedBroker, free_port

    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    broker = None
    bootstrap = os.environ.get("CRM_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
    admin = generate_api_key()[1]
    ports = {name: free_port() for name in (*SERVICES, "gateway", "uncached", "hello", "standins")}
    env = dict(os.environ, CRM_KAFKA_BOOTSTRAP=bootstrap, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env |= {f"CRM_{s.upper()}_DATA_DIR": str(workdir / s) for s in (*SERVICES, "gateway")}
    env |= {
        f"CRM_GATEWAY_{s.upper()}_URL": f"http://127.0.0.1:{ports['standins' if args.standins else s]}"
        for s in SERVICES
    }
    env |= {
        "CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY": admin,
        "CRM_GATEWAY_RATE_LIMIT_PER_S": "1000000",
        "CRM_GATEWAY_RATE_LIMIT_BURST": "1000000",
        "CRM_GATEWAY_LOG_LEVEL": "WARNING",
    }
    uncached_env = env | {
        "CRM_GATEWAY_C360_CACHE_TTL_S": "0",
        "CRM_GATEWAY_DATA_DIR": str(workdir / "gateway-uncached"),
        "CRM_GATEWAY_WEBHOOK_GROUP": "crm-gateway-webhooks-uncached",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in services:
            processes.append(
                spawn(
                    f"services.{name}.app:create_app", ports[name], env, workdir / f"{name}.log", "--factory"
                )
            )
        gateway_app = "services.gateway.app:create_app"
        processes.append(spawn(gateway_app, ports["gateway"], env, workdir / "gateway.log", "--factory"))
        processes.append(
            spawn(gateway_app, ports["uncached"], uncached_env, workdir / "uncached.log", "--factory")
        )
        processes.append(
            spawn("gateway:hello_app", ports["hello"], env, workdir / "hello.log", "--app-dir", "bench")
        )
        if args.standins:
            processes.append(
                spawn(
                    "gateway:standin_app",
                    ports["standins"],
                    env,
                    workdir / "standins.log",
                    "--app-dir",
                    "bench",
                )
            )
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

        async def run() -> dict[str, Any]:
            started = time.perf_counter()
            waited = [*services, "gateway", "uncached"]
            ready = dict(
                zip(
                    waited,
                    await asyncio.gather(*(wait_ready(url[n], args.ready_timeout) for n in waited)),
                    strict=True,
                )
            )
            print(f"ready after {time.perf_counter() - started:.0f}s: {ready}")
            headers = {"X-API-Key": admin}
            run_id = uuid.uuid4().hex[:6]
            customers = [f"bench-{run_id}-{i}" for i in range(args.customers)]
            started = time.perf_counter()
            await seed(url["gateway"], url["profile"] if ready.get("profile") else None, headers, customers)
            print(f"seeded {len(customers)} customers in {time.perf_counter() - started:.0f}s")
            import httpx

            async with httpx.AsyncClient(headers=headers) as client:
                sample = (await client.get(f"{url['gateway']}/v1/customers/{customers[0]}")).json()
            print(f"360 sample: degraded={sample.get('degraded')}")
            reads = [get_request(f"/v1/customers/{c}", headers) for c in customers]
            hello = await closed_loop(
                url["hello"], [get_request("/hello", {})], args.concurrency, args.duration
            )
            # Steady state: every customer read once before the clock starts (the first read of each is
            # a miss); during the runs, the fleet's events and the TTL still evict and refresh entries.
            await warm_up(url["gateway"], reads)
            before = await c360_cache_counts(url["gateway"])
            c360 = await closed_loop(url["gateway"], reads, args.concurrency, args.duration)
            after = await c360_cache_counts(url["gateway"])
            c360["hit_share"] = hit_share(before, after)
            fixed = await open_loop(url["gateway"], reads, 200, args.duration)
            before = await c360_cache_counts(url["gateway"])
            fixed["hit_share"] = hit_share(after, before)
            writes = [
                post_request(
                    "/v1/events",
                    headers,
                    json.dumps(
                        {"type": "identify", "customer": {"customer_id": c}, "traits": {"visits": i}}
                    ).encode(),
                )
                for i, c in enumerate(customers)
            ]
            mixed = await open_loop_with_events(
                url["gateway"], reads, writes, 200, args.mixed_events_per_s, args.duration
            )
            mixed["hit_share"] = hit_share(before, await c360_cache_counts(url["gateway"]))
            uncached = await closed_loop(url["uncached"], reads, args.concurrency, args.duration)
            fixed_uncached = await open_loop(url["uncached"], reads, 200, args.duration)
            fan_out_ms = await downstream_mean_ms(url["uncached"])
            # End to end before the ingest phase: ingest leaves the profile consumer a backlog of
            # hundreds of thousands of events, and this figure would measure draining it.
            e2e = (
                await end_to_end(url["gateway"], url["profile"], headers, args.e2e_events, args.ingest_batch)
                if ready.get("profile")
                else {"events_per_s": 0.0}
            )
            ingested = await ingest(
                url["gateway"], headers, args.ingest_batch, args.ingest_concurrency, args.duration
            )
            return {
                "ready": ready,
                "degraded": sample.get("degraded"),
                "hello": hello,
                "c360": c360,
                "uncached": uncached,
                "fixed": fixed,
                "mixed": mixed,
                "fan_out_ms": fan_out_ms,
                "fixed_uncached": fixed_uncached,
                "ingest": ingested,
                "e2e": e2e,
            }

        r = run_fast(run)
        r["path"] = ingest_path_in_process(bootstrap, 20_000, args.ingest_batch)
        r["kafka_python"] = raw_kafka_python(bootstrap, 20_000)
        r["librdkafka"] = raw_librdkafka(bootstrap, 20_000)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if broker is not None:
            broker.stop()

    results = {
        "c360_rps": round(r["c360"]["rps"], 1),
        "hello_rps": round(r["hello"]["rps"], 1),
        "ratio": round(r["c360"]["rps"] / r["hello"]["rps"], 3),
        "c360_p50_ms": round(r["c360"]["p50_ms"], 2),
        "c360_p99_ms": round(r["c360"]["p99_ms"], 2),
        "hello_p50_ms": round(r["hello"]["p50_ms"], 2),
        "hello_p99_ms": round(r["hello"]["p99_ms"], 2),
        "c360_cache_hit_share": round(r["c360"]["hit_share"], 3),
        "c360_p50_ms_at_200rps": round(r["fixed"]["p50_ms"], 2),
        "c360_p99_ms_at_200rps": round(r["fixed"]["p99_ms"], 2),
        "c360_cache_hit_share_at_200rps": round(r["fixed"]["hit_share"], 3),
        "c360_p99_ms_at_200rps_with_events": round(r["mixed"]["p99_ms"], 2),
        "c360_cache_hit_share_at_200rps_with_events": round(r["mixed"]["hit_share"], 3),
        "events_per_s_during_reads": args.mixed_events_per_s,
        "uncached_c360_rps": round(r["uncached"]["rps"], 1),
        "uncached_ratio": round(r["uncached"]["rps"] / r["hello"]["rps"], 3),
        "uncached_c360_p99_ms": round(r["uncached"]["p99_ms"], 2),
        "uncached_c360_p99_ms_at_200rps": round(r["fixed_uncached"]["p99_ms"], 2),
        "c360_errors": r["c360"]["errors"] + r["fixed"]["errors"] + r["mixed"]["errors"],
        "c360_degraded_answers": r["c360"]["degraded"] + r["fixed"]["degraded"] + r["mixed"]["degraded"],
        "uncached_degraded_answers_at_200rps": r["fixed_uncached"]["degraded"],
        "uncached_degraded_answers_closed_loop": r["uncached"]["degraded"],
        "uncached_downstream_mean_ms": r["fan_out_ms"],
        "uncached_c360_errors": r["uncached"]["errors"] + r["fixed_uncached"]["errors"],
        "c360_degraded_parts": len(r["degraded"] or []),
        "ingest_events_per_s": round(r["ingest"]["events_per_s"], 1),
        "ingest_failed_requests": r["ingest"].get("failed_requests", 0),
        "end_to_end_events_per_s": round(r["e2e"]["events_per_s"], 1),
        "ingest_path_in_process_events_per_s": round(r["path"]["events_per_s"], 1),
        "ingest_path_cpu_us_per_event": round(r["path"]["cpu_us_per_event"], 2),
        "ingest_parse_cpu_us_per_event": round(r["path"]["parse_cpu_us_per_event"], 2),
        "raw_kafka_python_events_per_s": round(r["kafka_python"], 1),
        "raw_librdkafka_events_per_s": round(r["librdkafka"], 1),
        "client_cpu_share_hello": round(r["hello"]["client_cpu_share"], 2),
        "client_cpu_share_c360": round(r["c360"]["client_cpu_share"], 2),
        "client_cpu_share_ingest": round(r["ingest"]["client_cpu_share"], 2),
        "customers": args.customers,
        "concurrency": args.concurrency,
        "cpu_count": os.cpu_count() or 0,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(f"\nservices behind the gateway: {r['ready']}; 360 degraded parts: {r['degraded']}")
    print(f"{'metric':<36}{'value':>14}")
    for key, value in results.items():
        print(f"{key:<36}{value!s:>14}")
    out = ROOT / "bench" / "results" / ("gateway_standins.json" if args.standins else "gateway.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)} (logs in {workdir})")


def run_fast(main: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    """The load generator on uvloop when it is installed (uvicorn[standard] brings it), like the servers."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


if __name__ == "__main__":
    main()
