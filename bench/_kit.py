"""What the benchmarks share: starting apps and the fleet (``services.fleet``'s start-up), a lean keep-alive
HTTP/1.1 load client (closed and open loop), percentiles, the load generator's own CPU share, a hello-world
app as the speed baseline, waiting for /readyz."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.fleet import Fleet, ServiceProcess, free_port_offset, spawn, terminate
from services.fleet import wait_ready as wait_processes_ready

BENCH_DIR = Path(__file__).resolve().parent

hello_app = FastAPI()


@hello_app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


def start_app(
    name: str,
    target: str,
    port: int,
    *,
    env: Mapping[str, str],
    log_path: Path,
    factory: bool = False,
    app_dir: Path | None = BENCH_DIR,
) -> ServiceProcess:
    """A uvicorn app as its own process, started as the fleet starts its services (``services.fleet.spawn``):
    its own process group, output to ``log_path``, dies with the bench. ``target`` is ``module:app`` in
    bench/ (``hello_app`` here) or, with ``factory`` and ``app_dir=None``, e.g.
    ``services.profile.app:create_app``."""
    return spawn(name, target, port, env=env, log_path=log_path, factory=factory, app_dir=app_dir)


def start_service(service: str, port: int, *, env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """One fleet service (``services.<service>.app:create_app``) with the given environment."""
    target = f"services.{service}.app:create_app"
    return start_app(service, target, port, env=env, log_path=log_path, factory=True, app_dir=None)


def wait_started(processes: Sequence[ServiceProcess], timeout_s: float) -> dict[str, float]:
    """Until every process answers /readyz with 200 (seconds to ready by name); fails as soon as one exits."""
    return wait_processes_ready(processes, timeout_s)


def stop_apps(processes: Sequence[ServiceProcess]) -> None:
    """SIGTERM, then SIGKILL after 25 s, as the fleet stops its services."""
    terminate(processes)


def start_fleet(data_dir: Path, *, port_offset: int | None = None, timeout_s: float = 600.0) -> Fleet:
    """The whole fleet as `crm up` starts it (no demo load), ready, with data and logs under ``data_dir``, at
    a free port offset unless one is given; stop it with ``fleet.stop()``."""
    fleet = Fleet(data_dir=data_dir, port_offset=free_port_offset() if port_offset is None else port_offset)
    fleet.start_ready(timeout_s)
    return fleet


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


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time; bodies framed by Content-Length."""

    _length = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)

    def __init__(self) -> None:
        self.transport: Any = None  # asyncio's or uvloop's transport
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end])
        match = self._length.search(head)
        if match is None:
            self.waiter.set_exception(ConnectionError("response without Content-Length"))
            return
        total = end + 4 + int(match.group(1))
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        self.waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def connect(url: str) -> Connection:
    host, port = url.removeprefix("http://").split(":")
    _, protocol = await asyncio.get_running_loop().create_connection(Connection, host, int(port))
    return protocol


def get_request(path: str, headers: dict[str, str]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{lines}\r\n".encode()


def post_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{lines}\r\n"
    ).encode() + body


def is_degraded(body: bytes) -> bool:
    """A 360 answer that names a missing part (a service down, or slower than the per-call timeout)."""
    return b'"degraded":[' in body and b'"degraded":[]' not in body


class ClientCpu:
    """The load generator's own CPU time over a phase, as a share of one core."""

    def __enter__(self) -> ClientCpu:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.share = (time.process_time() - self.cpu) / (time.perf_counter() - self.wall)


async def closed_loop(
    url: str, requests: list[bytes], concurrency: int, duration_s: float
) -> dict[str, float]:
    """``concurrency`` connections, each sending the next request as soon as the last one answered;
    every request is drawn at random from ``requests``."""
    latencies: list[float] = []
    errors = degraded = 0
    connections = [await connect(url) for _ in range(concurrency)]
    pick = random.Random(7).choice
    for connection in connections:  # warm-up
        for _ in range(5):
            await connection.send(pick(requests))

    async def worker(connection: Connection) -> None:
        nonlocal errors, degraded
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status, body = await connection.send(pick(requests))
            latencies.append(time.perf_counter() - started)
            errors += status != 200
            degraded += is_degraded(body)

    with ClientCpu() as cpu:
        stop = time.perf_counter() + duration_s
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in connections))
        elapsed = time.perf_counter() - started
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
        "degraded": degraded,
        "client_cpu_share": cpu.share,
    }


async def open_loop(
    url: str, requests: list[bytes], rate: float, duration_s: float, connections: int = 256
) -> dict[str, float]:
    """Requests sent at a fixed rate whatever the answers do; latency counts from each request's scheduled
    time, so a request that had to wait for a free connection (one of ``connections``) is charged for the
    wait."""
    latencies: list[float] = []
    errors = degraded = 0
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await connect(url))
    pick = random.Random(11).choice

    async def one(scheduled: float) -> None:
        nonlocal errors, degraded
        connection = await idle.get()
        try:
            status, body = await connection.send(pick(requests))
            errors += status != 200
            degraded += is_degraded(body)
        finally:
            idle.put_nowait(connection)
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    with ClientCpu() as cpu:
        t0 = time.perf_counter()
        for i in range(int(rate * duration_s)):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    while not idle.empty():
        connection = idle.get_nowait()
        assert connection.transport is not None
        connection.transport.close()
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
        "degraded": degraded,
        "client_cpu_share": cpu.share,
    }
