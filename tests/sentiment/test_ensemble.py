"""The served English ensemble: a network averaged with a word n-gram NB-LR, chosen on validation data."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.sentiment.app import create_app
from services.sentiment.model import (
    KIND_ENSEMBLE,
    KIND_FROZEN,
    KIND_FROZEN_ENSEMBLE,
    list_models,
    load_network,
    read_metadata,
)
from services.sentiment.service import english_model_dir
from services.sentiment.settings import SentimentSettings
from services.sentiment.training import train_ngram_ensemble

from .test_api import NEGATIVE, POSITIVE, wait_ready

TEXTS = [POSITIVE, NEGATIVE, "It arrived on Tuesday. " * 40 + "Sadly it was broken."]


@pytest.fixture(scope="module")
def ensemble_data_dir(sentiment_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Its own data dir (the shared one must keep serving the first-start model) holding a copy of the
    first-start network as the ensemble's network (a fine-tune would do the same, only slower to train),
    without the first start's own ensemble (the server would weigh the two on validation data)."""
    data_dir = tmp_path_factory.mktemp("sentiment-ensemble")
    shutil.copytree(
        sentiment_models_dir / "models",
        data_dir / "models",
        ignore=shutil.ignore_patterns("onnx", f"{KIND_FROZEN_ENSEMBLE}-*"),
    )
    frozen = list_models(data_dir / "models", KIND_FROZEN)[0]
    train_ngram_ensemble(data_dir, frozen, c_values=(1.0,))
    return data_dir


def test_the_ensemble_weight_is_chosen_on_validation_and_never_loses_to_its_network_there(
    ensemble_data_dir: Path,
) -> None:
    ensemble_dir = list_models(ensemble_data_dir / "models", KIND_ENSEMBLE)[0]
    meta = read_metadata(ensemble_dir)

    assert meta["network"].startswith(KIND_FROZEN)
    assert 0.0 <= meta["ngram_weight"] <= 0.6
    # Weight 0 (the network alone) is one of the candidates, so validation accuracy cannot drop.
    assert meta["metrics"]["val_acc"] >= meta["metrics"]["network_val_acc"]
    assert meta["metrics"]["ngram_val_acc"] > 0.6


def test_the_ensemble_averages_its_network_and_ngram_probabilities(ensemble_data_dir: Path) -> None:
    ensemble_dir = list_models(ensemble_data_dir / "models", KIND_ENSEMBLE)[0]
    model = replace(load_network(ensemble_dir, backend="torch"), ngram_weight=0.4)
    network = load_network(ensemble_data_dir / "models" / read_metadata(ensemble_dir)["network"])
    ngram = model.ngram.predict_proba(TEXTS)[:, 1]

    np.testing.assert_allclose(
        model.predict_proba(TEXTS), 0.6 * network.predict_proba(TEXTS) + 0.4 * ngram, atol=1e-6
    )
    assert model.predict_proba(TEXTS)[0] > 0.5 > model.predict_proba(TEXTS)[1]


def test_the_server_serves_the_ensemble_and_says_so(ensemble_data_dir: Path, tmp_path: Path) -> None:
    settings = SentimentSettings(
        data_dir=str(ensemble_data_dir),
        database_url=f"sqlite:///{tmp_path}/sentiment.db",
        consume_events=False,
        cpu_backend="torch",
        max_wait_ms=2,
    )
    ensemble_dir = list_models(ensemble_data_dir / "models", KIND_ENSEMBLE)[0]
    assert english_model_dir(settings) == ensemble_dir  # better on validation than its network alone

    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        results = client.post("/sentiment", json={"texts": [POSITIVE, NEGATIVE]}).json()["results"]
        english = client.get("/sentiment/models").json()["models"][0]

    assert [r["label"] for r in results] == ["positive", "negative"]
    assert {r["model_version"] for r in results} == {ensemble_dir.name}
    assert english["kind"] == KIND_ENSEMBLE
    assert english["members"]["network"] == read_metadata(ensemble_dir)["network"]
    assert english["members"]["ngram_weight"] == read_metadata(ensemble_dir)["ngram_weight"]
