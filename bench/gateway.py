"""Gateway benchmark: the customer 360 next to a hello-world endpoint, ingest throughput, end to end.

    .venv/bin/python bench/gateway.py                      # real services behind the gateway
    .venv/bin/python bench/gateway.py --services profile   # only some real services (others degraded)

Starts the embedded broker (or uses CRM_KAFKA_BOOTSTRAP), the real services as uvicorn processes (each
trains its start-up model), the gateway and a hello-world FastAPI app as their own uvicorn processes,
then measures from this process with an asyncio httpx load generator:

* ``c360_rps`` / ``hello_rps``: closed-loop req/s of ``GET /v1/customers/{id}`` and ``GET /hello`` at the
  same concurrency, with p50/p99; ``ratio`` = c360_rps / hello_rps (target >= 0.4);
* ``c360_p99_ms_at_200rps``: p99 latency of the 360 under an open-loop 200 req/s (target < 50 ms);
* ``ingest_events_per_s``: events accepted (202, acknowledged by the broker) through batched
  ``POST /v1/events`` (target >= 20,000/s);
* ``end_to_end_events_per_s``: identify events for new customers from the first POST until the profile
  service's consumer has applied them all (its customer count says so).

Writes bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI

hello_app = FastAPI()


@hello_app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


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


async def wait_ready(url: str, timeout_s: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    return False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def closed_loop(
    url: str, headers: dict[str, str], concurrency: int, duration_s: float
) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10, headers=headers) as client:
        for _ in range(20):  # warm-up
            await client.get(url)
        stop = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    response = await client.get(url)
                    errors += response.status_code != 200
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
    }


async def open_loop(url: str, headers: dict[str, str], rate: float, duration_s: float) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=200), timeout=10, headers=headers
    ) as client:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                response = await client.get(url)
                errors += response.status_code != 200
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)

        tasks = []
        t0 = time.perf_counter()
        for i in range(int(rate * duration_s)):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
    }


async def ingest(
    url: str, headers: dict[str, str], batch: int, concurrency: int, duration_s: float
) -> dict[str, float]:
    import httpx

    accepted = 0
    failures = 0
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        stop = time.perf_counter() + duration_s

        async def worker(w: int) -> None:
            nonlocal accepted, failures
            n = 0
            while time.perf_counter() < stop:
                events = [
                    {
                        "type": "product_view",
                        "customer": {"customer_id": f"bench-{w}-{(n + i) % 500}"},
                        "item_id": f"{i % 1682}",
                    }
                    for i in range(batch)
                ]
                n += batch
                response = await client.post(url, json=events)
                if response.status_code == 202:
                    accepted += response.json()["accepted"]
                else:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"events_per_s": accepted / elapsed, "accepted": accepted, "failed_requests": failures}


def raw_producer(bootstrap: str, n: int, in_flight: int) -> float:
    """kafka-python alone, acks=all, the same record sizes: the ceiling the gateway's publisher works under."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=in_flight,
    )
    value = json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/bench",
            "type": "crm.product_view.v1",
            "time": "2026-01-01T00:00:00Z",
            "data": {"customer": {"customer_id": "bench-1"}, "item_id": "50"},
        }
    ).encode()
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


def ingest_path_in_process(bootstrap: str, n: int, batch: int) -> float:
    """The gateway's own ingest code (parse, validate, publish, wait for acks) without HTTP."""
    from services.gateway.ingest import parse_batch, publish_batch
    from shared.kafka import EventPublisher
    from shared.settings import KafkaSettings

    publisher = EventPublisher(KafkaSettings(bootstrap=bootstrap))
    body = json.dumps(
        [
            {
                "type": "product_view",
                "customer": {"customer_id": f"bench-{i % 500}"},
                "item_id": f"{i % 1682}",
            }
            for i in range(batch)
        ]
    ).encode()
    started = time.perf_counter()
    for _ in range(n // batch):
        parsed = parse_batch(json.loads(body), source="/bench", id_seed=None)
        publish_batch(publisher, parsed.events, 30)
    elapsed = time.perf_counter() - started
    publisher.close()
    return (n // batch) * batch / elapsed


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


async def seed(gateway: str, profile: str | None, headers: dict[str, str], customer: str) -> None:
    """One customer with some history, so every part of the 360 has something to show."""
    import httpx

    events: list[dict[str, Any]] = [
        {
            "type": "identify",
            "customer": {"customer_id": customer, "email": f"{customer}@example.com"},
            "traits": {"name": "Ada"},
        }
    ]
    for i in range(20):
        events.append(
            {"type": "rating", "customer": {"customer_id": customer}, "item_id": str(1 + i * 7), "rating": 4}
        )
        events.append(
            {
                "type": "purchase",
                "customer": {"customer_id": customer},
                "order_id": f"{customer}-{i}",
                "amount": 10.0 + i,
                "items": [{"item_id": str(1 + i * 7), "price": 10.0 + i}],
            }
        )
    events.append(
        {"type": "review", "customer": {"customer_id": customer}, "text": "Great service, fast delivery."}
    )
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        (await client.post(f"{gateway}/v1/events", json=events)).raise_for_status()
        if profile:
            for _ in range(300):
                if (await client.get(f"{profile}/customers/{customer}")).status_code == 200:
                    break
                await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # let the other consumers apply the history too


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--services", default=",".join(SERVICES), help="Real services to start behind the gateway."
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
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
    ports = {name: free_port() for name in (*SERVICES, "gateway", "hello")}
    env = dict(os.environ, CRM_KAFKA_BOOTSTRAP=bootstrap, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env |= {f"CRM_{s.upper()}_DATA_DIR": str(workdir / s) for s in (*SERVICES, "gateway")}
    ports["standins"] = free_port()
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
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in services:
            processes.append(
                spawn(
                    f"services.{name}.app:create_app", ports[name], env, workdir / f"{name}.log", "--factory"
                )
            )
        processes.append(
            spawn(
                "services.gateway.app:create_app", ports["gateway"], env, workdir / "gateway.log", "--factory"
            )
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
            ready = dict(
                zip(
                    [*services, "gateway"],
                    await asyncio.gather(
                        *(wait_ready(url[n], args.ready_timeout) for n in [*services, "gateway"])
                    ),
                    strict=True,
                )
            )
            print(f"ready after {time.perf_counter() - started:.0f}s: {ready}")
            headers = {"X-API-Key": admin}
            customer = f"bench-{uuid.uuid4().hex[:6]}"
            await seed(url["gateway"], url["profile"] if ready.get("profile") else None, headers, customer)
            import httpx

            async with httpx.AsyncClient(headers=headers) as client:
                sample = (await client.get(f"{url['gateway']}/v1/customers/{customer}")).json()
            print(f"360 sample: degraded={sample.get('degraded')}")
            c360_url = f"{url['gateway']}/v1/customers/{customer}"
            hello = await closed_loop(f"{url['hello']}/hello", {}, args.concurrency, args.duration)
            c360 = await closed_loop(c360_url, headers, args.concurrency, args.duration)
            fixed = await open_loop(c360_url, headers, 200, args.duration)
            ingested = await ingest(
                f"{url['gateway']}/v1/events",
                headers,
                args.ingest_batch,
                args.ingest_concurrency,
                args.duration,
            )
            e2e = (
                await end_to_end(url["gateway"], url["profile"], headers, args.e2e_events, args.ingest_batch)
                if ready.get("profile")
                else {"events_per_s": 0.0}
            )
            return {
                "ready": ready,
                "degraded": sample.get("degraded"),
                "hello": hello,
                "c360": c360,
                "fixed": fixed,
                "ingest": ingested,
                "e2e": e2e,
            }

        r = asyncio.run(run())
        r["path"] = ingest_path_in_process(bootstrap, 20_000, args.ingest_batch)
        r["raw1"] = raw_producer(bootstrap, 20_000, 1)
        r["raw5"] = raw_producer(bootstrap, 20_000, 5)
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
        "c360_p50_ms_at_200rps": round(r["fixed"]["p50_ms"], 2),
        "c360_p99_ms_at_200rps": round(r["fixed"]["p99_ms"], 2),
        "c360_errors": r["c360"]["errors"] + r["fixed"]["errors"],
        "c360_degraded_parts": len(r["degraded"] or []),
        "ingest_events_per_s": round(r["ingest"]["events_per_s"], 1),
        "ingest_failed_requests": r["ingest"].get("failed_requests", 0),
        "end_to_end_events_per_s": round(r["e2e"]["events_per_s"], 1),
        "ingest_path_in_process_events_per_s": round(r["path"], 1),
        "raw_producer_events_per_s_inflight1": round(r["raw1"], 1),
        "raw_producer_events_per_s_inflight5": round(r["raw5"], 1),
        "concurrency": args.concurrency,
        "cpu_count": os.cpu_count() or 0,
    }
    print(f"\nservices behind the gateway: {r['ready']}; 360 degraded parts: {r['degraded']}")
    print(f"{'metric':<28}{'value':>14}")
    for key, value in results.items():
        print(f"{key:<28}{value:>14}")
    out = ROOT / "bench" / "results" / ("gateway_standins.json" if args.standins else "gateway.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)} (logs in {workdir})")


if __name__ == "__main__":
    main()
