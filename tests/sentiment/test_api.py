from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.sentiment.app import create_app
from services.sentiment.settings import SentimentSettings

POSITIVE = (
    "An absolute delight: brilliant, moving and beautifully made. I loved every minute and will buy it again."
)
NEGATIVE = "A dull, tedious mess. Awful taste, stale and broken on arrival; a complete waste of money."


def wait_ready(client: TestClient, timeout_s: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            body: dict[str, object] = response.json()
            return body
        time.sleep(0.2)
    raise AssertionError(f"not ready: {client.get('/readyz').json()}")


@pytest.fixture
def client(sentiment_models_dir: Path, tmp_path: Path) -> TestClient:
    settings = SentimentSettings(
        data_dir=str(sentiment_models_dir),
        # Not the default (auto), which may compile the network at every start (about 25 s on one
        # core); test_units covers what auto picks.
        cpu_backend="int8",
        database_url=f"sqlite:///{tmp_path}/sentiment.db",
        consume_events=False,
        max_texts_per_request=8,
        max_text_chars=500,
        max_wait_ms=2,
    )
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        yield test_client


def test_clear_reviews_get_the_right_labels_and_the_model_version(client: TestClient) -> None:
    response = client.post("/sentiment", json={"texts": [POSITIVE, NEGATIVE]})

    assert response.status_code == 200
    positive, negative = response.json()["results"]
    assert positive["label"] == "positive"
    assert positive["score"] > 0.6
    assert negative["label"] == "negative"
    assert negative["score"] < 0.4
    assert positive["language"] == negative["language"] == "en"
    assert positive["model_version"].startswith("minilm-frozen-ngram-ensemble-")


def test_readyz_names_the_served_models_and_their_measured_accuracy(client: TestClient) -> None:
    ready = client.get("/readyz").json()
    english = ready["info"]["models"]["en"]
    listed = client.get("/sentiment/models").json()["models"][0]

    assert any(name.startswith("model:en=minilm-") and ";zh=zh-" in name for name in ready["checks"])
    assert english["kind"] == "minilm-frozen-ngram-ensemble"
    assert english["model_version"] == listed["model_version"]
    assert set(english["test_acc"]) == {"rotten_tomatoes"}  # the only English set in the test data dir
    assert 0.7 < english["test_acc"]["rotten_tomatoes"] < 1
    assert english["val_acc"] == listed["val_acc"] > 0.7
    assert listed["test_acc"] == english["test_acc"]
    assert ready["info"]["models"]["zh"]["val_acc"] > 0.7


def test_chinese_text_is_routed_to_the_chinese_model(client: TestClient) -> None:
    response = client.post(
        "/sentiment", json={"texts": ["质量太差了，完全不能用，退货！", "非常好，很喜欢，物超所值，推荐购买"]}
    )

    negative, positive = response.json()["results"]
    assert negative["language"] == positive["language"] == "zh"
    assert negative["model_version"].startswith("zh-char-ngram-lr-")
    assert negative["label"] == "negative"
    assert positive["label"] == "positive"


def test_concurrent_requests_are_batched_and_answered_in_order(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [POSITIVE, NEGATIVE] * 8
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: client.post("/sentiment", json={"texts": [t]}).json(), texts))

    labels = [a["results"][0]["label"] for a in answers]
    assert labels == ["positive", "negative"] * 8


@pytest.mark.parametrize(
    ("texts", "error"),
    [
        (["fine"] * 9, "TooManyTexts"),
        (["x" * 501], "TextTooLong"),
    ],
)
def test_oversize_requests_get_422_in_the_error_shape(
    client: TestClient, texts: list[str], error: str
) -> None:
    response = client.post("/sentiment", json={"texts": texts}, headers={"X-Request-ID": "req-oversize"})

    assert response.status_code == 422
    assert response.json()["error"] == error
    assert response.json()["request_id"] == "req-oversize"
    assert response.json()["detail"]


def test_an_empty_list_is_a_validation_error_in_the_error_shape(client: TestClient) -> None:
    response = client.post("/sentiment", json={"texts": []})

    assert response.status_code == 422
    assert response.json()["error"] == "InvalidRequest"
    assert set(response.json()) == {"error", "detail", "request_id"}
