"""Helpers for the gateway tests: run an ASGI app on a real port (a webhook receiver), keys, reading a
topic back. The services behind the gateway are never stood in for: see tests/fleet_support.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from shared.auth import generate_api_key
from shared.broker import free_port

ADMIN_KEY = generate_api_key()[1]


class ServerThread:
    """A uvicorn server in a thread on 127.0.0.1:<port> (a real HTTP process boundary for httpx)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[ServerThread]:
    server = ServerThread(app, port).start()
    try:
        yield server
    finally:
        server.stop()


def make_key(client: TestClient, *scopes: str, rate_limit_per_s: float | None = None) -> str:
    body: dict[str, Any] = {"name": f"test {' '.join(scopes)}", "scopes": list(scopes)}
    if rate_limit_per_s is not None:
        body["rate_limit_per_s"] = rate_limit_per_s
    response = client.post("/v1/admin/keys", json=body, headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def read_topic(
    bootstrap: str, topic: str, *, timeout_s: float = 10.0, expect: int | None = None
) -> list[Any]:
    """Every record on ``topic`` (all partitions, from the start), as ``(key, value-dict)``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=500)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer:
                records.append((message.key.decode() if message.key else None, json.loads(message.value)))
            if all(consumer.position(tp) >= end[tp] for tp in tps) and (
                expect is None or len(records) >= expect
            ):
                break
        return records
    finally:
        consumer.close()
