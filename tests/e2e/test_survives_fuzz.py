"""The gateway survives a concurrent fuzz of its whole OpenAPI, abandoned requests included.

Schemathesis (4 workers) fuzzes every route of the real gateway in front of the real fleet while other
clients start requests and hang up mid-way. Afterwards every route answers a valid request within its
timeout and without a 5xx, every downstream circuit breaker is closed again, and no process of the fleet
ever answered 500 (an unhandled error) during the whole run.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.fleet_support import RunningFleet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FUZZ_SECONDS = 300  # a cap: the run ends after its examples, about 40 s on a quiet 2-core machine
EXAMPLES_PER_OPERATION = 80
MIN_FUZZ_REQUESTS = 1500
ROUTE_TIMEOUT_S = 5.0  # the gateway's per-call downstream timeout is 2 s; a 360 makes two rounds at most
_REQUESTS = re.compile(r"^crm_http_requests_total\{([^}]*)\} (\S+)$", re.M)


def requests_by_status(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for labels, value in _REQUESTS.findall(httpx.get(f"{url}/metrics", timeout=10).text):
        status = re.search(r'status="(\d+)"', labels)
        if status:
            counts[status.group(1)] = counts.get(status.group(1), 0.0) + float(value)
    return counts


def open_breakers(gateway: str) -> list[str]:
    text = httpx.get(f"{gateway}/metrics", timeout=10).text
    return re.findall(r'^crm_gateway_breaker_open\{downstream="(\w+)"\} 1\.0$', text, re.M)


async def abandon_requests(gateway: str, key: str, customer_ids: list[str], stop: threading.Event) -> int:
    """Start requests and give up on them after a few milliseconds, as impatient clients do."""
    abandoned = 0
    paths = [f"/v1/customers/{c}{sub}" for c in customer_ids for sub in ("", "/churn", "/recommendations")]
    paths += ["/v1/customers?limit=200", "/v1/churn/at-risk?limit=500", "/v1/segments"]
    async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": key}) as client:
        i = 0
        while not stop.is_set():
            batch = []
            for _ in range(20):
                path = paths[i % len(paths)]
                i += 1
                batch.append(client.get(path, timeout=httpx.Timeout(0.002 + (i % 7) * 0.01)))
            for outcome in await asyncio.gather(*batch, return_exceptions=True):
                abandoned += isinstance(outcome, httpx.TimeoutException)
            await asyncio.sleep(0.2)
    return abandoned


@pytest.fixture
def restores_fleet_state(real_fleet: RunningFleet) -> Iterator[None]:
    """The fuzz creates segments, API keys and knowledge-base articles, and may replace the support intent
    catalog; the session's other tests should not inherit any of it."""
    with real_fleet.client() as client:
        segments_before = {s["id"] for s in client.get("/v1/segments").json()}
        keys_before = {k["key_id"] for k in client.get("/v1/admin/keys").json()}
        catalog = client.get("/v1/support/intents").json()
        articles_before = {a["id"]: a for a in client.get("/v1/support/articles").json()}
    yield
    with real_fleet.client() as client:
        # Straight to the service: a refit on the whole catalog can outlast the gateway's per-call timeout.
        restored = httpx.put(
            f"{real_fleet.url_of('support')}/intents",
            json={"intents": catalog["intents"]},
            headers=real_fleet.internal_headers(),
            timeout=300,
        )
        assert restored.status_code == 200, restored.text
        for article in client.get("/v1/support/articles").json():
            if article["id"] not in articles_before:
                client.delete(f"/v1/support/articles/{quote(article['id'], safe='')}")
        for article_id, article in articles_before.items():
            fields = {
                k: article[k] for k in ("title", "body", "language", "intents", "reply") if k in article
            }
            client.put(f"/v1/support/articles/{quote(article_id, safe='')}", json=fields)
        for segment in client.get("/v1/segments").json():
            if segment["id"] not in segments_before:
                client.delete(f"/v1/segments/{quote(segment['id'], safe='')}")
        for key in client.get("/v1/admin/keys").json():
            if key["key_id"] not in keys_before:
                client.delete(f"/v1/admin/keys/{quote(key['key_id'], safe='')}")


def valid_requests(customer_id: str, item_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/v1/customers?limit=5", None),
        ("GET", f"/v1/customers/{customer_id}", None),
        ("GET", f"/v1/customers/{customer_id}/timeline?limit=5", None),
        ("GET", f"/v1/customers/{customer_id}/recommendations?k=5", None),
        ("GET", f"/v1/customers/{customer_id}/sentiment", None),
        ("GET", f"/v1/customers/{customer_id}/churn", None),
        ("GET", f"/v1/customers/{customer_id}/export", None),
        ("GET", "/v1/customers/lookup?type=customer_id&value=" + customer_id, None),
        ("GET", "/v1/segments", None),
        ("GET", "/v1/churn/at-risk?limit=5", None),
        ("GET", f"/v1/items/{item_id}/similar?k=5", None),
        ("POST", "/v1/sentiment", {"texts": ["great service", "快递太慢了"]}),
        ("POST", "/v1/recommendations/session", {"item_ids": [item_id], "k": 5}),
        (
            "POST",
            "/v1/events",
            {"type": "product_view", "customer": {"customer_id": customer_id}, "item_id": item_id},
        ),
        ("GET", "/v1/admin/keys", None),
        ("GET", "/v1/webhooks", None),
    ]


def test_the_gateway_survives_a_concurrent_fuzz(
    real_fleet: RunningFleet, restores_fleet_state: None, tmp_path: Path
) -> None:
    gateway = real_fleet.gateway
    services = {name: real_fleet.url_of(name) for name in real_fleet.fleet.services}
    before = {name: requests_by_status(url) for name, url in services.items()}
    with real_fleet.client() as client:
        demo = [c["id"] for c in client.get("/v1/customers?limit=20&sort=orders").json()["items"]]
    assert demo, "the demo data is not loaded"

    stop = threading.Event()
    abandoned: list[int] = []
    impatient = threading.Thread(
        target=lambda: abandoned.append(
            asyncio.run(abandon_requests(gateway, real_fleet.admin_key, demo, stop))
        )
    )
    impatient.start()
    try:
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{gateway}/openapi.json",
                "--header",
                f"X-API-Key: {real_fleet.admin_key}",
                "--workers",
                "4",
                "--phases",
                "examples,fuzzing",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--max-time",
                str(FUZZ_SECONDS),
                "--request-timeout",
                "10",
                "--checks",
                "not_a_server_error",
                "--suppress-health-check",
                "all",
                "--generation-database",
                "none",
                "--seed",
                "23",
                "--no-color",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        try:
            output, _ = runner.communicate(timeout=FUZZ_SECONDS + 240)
        finally:
            if runner.poll() is None:  # never leave it fuzzing the session's fleet
                runner.kill()
                runner.wait()
    finally:
        stop.set()
        impatient.join(timeout=60)
    after = {name: requests_by_status(url) for name, url in services.items()}
    generated = re.search(r"(\d+) generated", output)
    fuzzed = int(generated.group(1)) if generated else 0
    served = sum(after["gateway"].values()) - sum(before["gateway"].values())
    print(
        f"fuzz: {fuzzed} generated requests, {abandoned[0] if abandoned else 0} abandoned by the client, "
        f"{served:.0f} answered by the gateway"
    )
    assert fuzzed >= MIN_FUZZ_REQUESTS, output[-3000:]
    assert abandoned
    assert abandoned[0] > 0
    # No unhandled error anywhere in the fleet, whatever the fuzz sent.
    for name in services:
        errors = after[name].get("500", 0.0) - before[name].get("500", 0.0)
        assert errors == 0, (
            f"{name} answered 500 {errors:.0f} times; see {real_fleet.data_dir}/logs/{name}.log"
        )

    # Once the burst is over: every route answers in time, with no 5xx, and the breakers close again.
    item = "movie-50"
    with real_fleet.client(timeout=ROUTE_TIMEOUT_S) as client:

        def answer(method: str, path: str, body: Any) -> tuple[int, float]:
            started = time.monotonic()
            try:
                status = client.request(method, path, json=body).status_code
            except httpx.TimeoutException:
                status = 0
            return status, time.monotonic() - started

        probes = valid_requests(demo[0], item)

        def recovered() -> bool:
            return not open_breakers(gateway) and all(0 < answer(*p)[0] < 500 for p in probes)

        # An open breaker fails fast for its reset time (5 s) before it lets a trial call through.
        wait_until(
            recovered, timeout_s=30, interval_s=1, what="every breaker to close and every route to answer"
        )
        for method, path, body in probes:
            status, seconds = answer(method, path, body)
            assert 0 < status < 500, f"{method} {path} answered {status}"
            assert seconds < ROUTE_TIMEOUT_S, f"{method} {path} took {seconds:.1f}s"
        assert open_breakers(gateway) == []
