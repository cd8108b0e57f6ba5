"""Helpers for the gateway tests: run an ASGI app on a real port, keys, reading a topic back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
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


def stand_in_profile() -> FastAPI:
    """Stands in for the profile service's read API (its router did not exist when this was written)."""
    app = FastAPI()

    @app.get("/customers/{customer_id}")
    async def customer(customer_id: str) -> Any:
        if customer_id.startswith("unknown"):
            return JSONResponse({"error": "CustomerNotFound", "detail": "no such customer"}, status_code=404)
        if customer_id.startswith("merged-"):
            customer_id = "survivor-1"  # like the real one: a merged-away id answers the survivor
        return {
            "customer_id": customer_id,
            "traits": {"name": "Ada"},
            "identities": [{"type": "email", "value": "ada@example.com"}],
            "segments": ["champions"],
            "clv": {"p_alive": 0.9, "expected_value": 120.0},
            "sentiment": {"trend": "steady", "last_label": "positive"},
        }

    return app


def stand_in_recsys() -> FastAPI:
    app = FastAPI()

    @app.get("/recommendations/{customer_id}")
    async def recommendations(customer_id: str, k: int = 10) -> Any:
        items = [{"item_id": str(i), "score": 1.0 / (i + 1), "because": ["181"]} for i in range(k)]
        return {"customer_id": customer_id, "items": items, "model_version": "standin-1"}

    return app


def stand_in_churn() -> FastAPI:
    app = FastAPI()

    @app.get("/churn/{customer_id}")
    async def churn(customer_id: str) -> Any:
        return {
            "customer_id": customer_id,
            "probability": 0.72,
            "band": "high",
            "reasons": ["no purchase for 94 days, +0.21"],
            "trend": "declining",
            "next_best_action": {"action": "retention_offer", "rule_id": "r1"},
        }

    return app


def stand_in_fleet() -> FastAPI:
    """One app answering every downstream route the gateway proxies, with the statuses the real services use
    (for the schemathesis run, whose subject is the gateway's own contract)."""
    app = FastAPI()
    app.include_router(stand_in_profile().router)
    app.include_router(stand_in_recsys().router)
    app.include_router(stand_in_churn().router)
    created = {("POST", "segments"), ("POST", "actions")}

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
    async def anything(path: str, request: Request) -> Any:
        first = path.split("/", 1)[0]
        if request.method == "DELETE" and first == "segments":
            return Response(status_code=204)
        if path.endswith("/missing"):
            return JSONResponse({"error": "NotFound", "detail": "no such thing"}, status_code=404)
        status = 201 if (request.method, first) in created else 200
        return JSONResponse({"path": path, "items": []}, status_code=status)

    return app


def stand_in_sentiment() -> FastAPI:
    app = FastAPI()

    @app.get("/customers/{customer_id}/sentiment")
    async def summary(customer_id: str, limit: int = 50) -> Any:
        return {"customer_id": customer_id, "count": 1, "mean_score": 0.9, "items": []}

    return app
