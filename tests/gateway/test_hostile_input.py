"""POST /v1/events with hostile input, against the real embedded broker: refused per item with 422 in
the error shape, never a 500, never a traceback in the log; good events in the same batch still go out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from shared.auth import Scope
from shared.contracts import Topic
from tests.gateway.support import make_key, read_topic


def _purchase(customer_id: str, order: str, amount: float = 20.0, **envelope: object) -> dict[str, object]:
    return {
        "type": "purchase",
        "customer": {"customer_id": customer_id},
        "order_id": order,
        "amount": amount,
        "items": [{"item_id": "sku-1", "quantity": 1, "price": min(amount, 10.0)}],
        **envelope,
    }


@pytest.mark.parametrize("depth", [300, 5_000, 100_000])
def test_deeply_nested_json_answers_422_without_a_traceback(
    client: TestClient, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    headers = {"X-API-Key": make_key(client, Scope.EVENTS_WRITE), "Content-Type": "application/json"}
    capsys.readouterr()
    arrays = client.post("/v1/events", content=b"[" * depth + b"]" * depth, headers=headers)
    traits = '{"type": "identify", "customer": {"customer_id": "c1"}, "traits": ' + '{"a": ' * depth
    objects = client.post("/v1/events", content=(traits + "1" + "}" * depth + "}").encode(), headers=headers)
    for response in (arrays, objects):
        assert response.status_code == 422, response.text
        assert set(response.json()) == {"error", "detail", "request_id"}
        assert response.json()["error"] == "InvalidRequest"
    logged = capsys.readouterr()
    assert "Traceback" not in logged.out + logged.err
    assert "unhandled_error" not in logged.out + logged.err


def test_implausible_events_are_refused_and_the_good_ones_published(
    client: TestClient, kafka_bootstrap: str, unique: str
) -> None:
    key = make_key(client, Scope.EVENTS_WRITE)
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    batch = [
        _purchase(f"good-{unique}", "o-0"),
        _purchase(f"c-{unique}", "o-1", time="9999-12-31T00:00:00Z"),
        _purchase(f"c-{unique}", "o-2", time="0001-01-01T00:00:00Z"),
        _purchase(f"c-{unique}", "o-3", amount=1e308),
        _purchase(f"nul\x00bel\x07-{unique}", "o-4"),
        _purchase(f"good-{unique}", "o-5", time="1997-12-20T10:00:00Z"),  # history imports
        _purchase(f"good-{unique}", "o-6", time=soon),  # a sender's clock a little ahead
    ]
    # NaN is not JSON, but Python's encoder writes it and many parsers take it: it must not pass.
    body = json.dumps([*batch, _purchase(f"c-{unique}", "o-7", amount=float("nan"))])
    response = client.post(
        "/v1/events", content=body, headers={"X-API-Key": key, "Content-Type": "application/json"}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 3
    errors = {e["index"]: e for e in answer["errors"]}
    assert {i: e["error"] for i, e in errors.items()} == {
        1: "InvalidEnvelope",
        2: "InvalidEnvelope",
        3: "InvalidPayload",
        4: "InvalidPayload",
        7: "InvalidPayload",
    }
    assert "CRM_EVENTS_MAX_FUTURE_SKEW_S" in errors[1]["detail"][0]["msg"]
    assert "CRM_EVENTS_TIME_FLOOR" in errors[2]["detail"][0]["msg"]
    assert "CRM_EVENTS_MAX_AMOUNT" in errors[3]["detail"][0]["msg"]
    assert errors[4]["detail"][0]["loc"] == ["customer", "customer_id"]
    published = {
        v["id"]: v for _, v in read_topic(kafka_bootstrap, Topic.INTERACTIONS) if v["id"] in answer["ids"]
    }
    assert sorted(v["data"]["order_id"] for v in published.values()) == ["o-0", "o-5", "o-6"]


def test_a_batch_of_only_hostile_events_answers_422(client: TestClient) -> None:
    headers = {"X-API-Key": make_key(client, Scope.EVENTS_WRITE)}
    response = client.post("/v1/events", json=[_purchase("c", "o", amount=1e308)], headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidRequest"
    assert response.json()["detail"][0]["error"] == "InvalidPayload"
