"""The upgrade path: a fine-tune run in the background replaces the served English model only when it
beats it on validation data, and its progress is visible at the models endpoint meanwhile."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.sentiment.app import create_app
from services.sentiment.model import KIND_FROZEN, KIND_FROZEN_ENSEMBLE, list_models, read_metadata
from services.sentiment.progress import read_progress
from services.sentiment.service import validation_accuracy
from services.sentiment.settings import SentimentSettings

from .test_api import wait_ready


@pytest.fixture
def upgrade_data_dir(sentiment_models_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's first-start models (the shared directory must keep serving them)."""
    data_dir = tmp_path / "sentiment"
    shutil.copytree(
        sentiment_models_dir / "models", data_dir / "models", ignore=shutil.ignore_patterns("onnx")
    )
    return data_dir


def settings_for(data_dir: Path, tmp_path: Path) -> SentimentSettings:
    return SentimentSettings(
        data_dir=str(data_dir),
        database_url=f"sqlite:///{tmp_path}/sentiment.db",
        consume_events=False,
        cpu_backend="int8",
        model_poll_s=0,  # no polling thread: the test calls the app's upgrader itself
        max_wait_ms=2,
    )


def wait_for_the_run(data_dir: Path, pid: int, timeout_s: float = 600) -> dict[str, Any]:
    """The run's last progress record, once it is no longer running (or its process is gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        progress = read_progress(data_dir)
        if progress and progress["state"] != "running":
            return progress
        if progress is None and not Path(f"/proc/{pid}").exists():
            raise AssertionError("the background fine-tune exited without writing its progress")
        time.sleep(0.5)
    os.kill(pid, signal.SIGTERM)
    raise AssertionError(f"the background fine-tune did not finish: {read_progress(data_dir)}")


def test_a_background_fine_tune_that_ends_worse_on_validation_does_not_replace_the_served_model(
    upgrade_data_dir: Path, tmp_path: Path
) -> None:
    settings = settings_for(upgrade_data_dir, tmp_path)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        served = client.get("/sentiment/models").json()["models"][0]
        # 64 texts, 4 steps, 32 tokens: a fine-tune that cannot match the first start on validation data.
        started = subprocess.run(
            [
                sys.executable, "-m", "services.cli", "sentiment", "train", "--background",
                "--data-dir", str(upgrade_data_dir), "--epochs", "1", "--max-train", "64",
                "--batch-size", "16", "--max-length", "32", "--no-chinese", "--no-ngram-ensemble",
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "training in the background (pid" in started.stdout
        pid = int(started.stdout.split("(pid ")[1].split(")")[0])
        progress = wait_for_the_run(upgrade_data_dir, pid)
        switched = client.app.state.upgrader.check()  # type: ignore[attr-defined]
        after = client.get("/sentiment/models").json()
        labelled = client.post("/sentiment", json={"texts": ["Loved it."]}).json()["results"][0]

    assert progress["state"] == "done"
    assert progress["step"] == progress["total_steps"] == 4
    new = read_metadata(upgrade_data_dir / "models" / str(progress["version"]))
    assert validation_accuracy(new) is not None
    assert validation_accuracy(new) < served["val_acc"]  # the premise: it ended worse on validation
    assert switched is False
    assert after["models"][0]["model_version"] == served["model_version"]
    assert labelled["model_version"] == served["model_version"]
    assert after["training"]["version"] == progress["version"]
    assert after["training"]["state"] == "done"
    assert list((upgrade_data_dir / "logs").glob("train-*.log"))  # where its progress bar went


def test_a_model_that_beats_the_served_one_on_validation_replaces_it_while_serving(
    upgrade_data_dir: Path, tmp_path: Path
) -> None:
    models = upgrade_data_dir / "models"
    ensemble = list_models(models, KIND_FROZEN_ENSEMBLE)[0]
    network = models / read_metadata(ensemble)["network"]
    assert read_metadata(network)["kind"] == KIND_FROZEN
    # Serve the first start's network alone, then let its ensemble (better on validation) appear.
    aside = shutil.move(ensemble, tmp_path / ensemble.name)
    settings = settings_for(upgrade_data_dir, tmp_path)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        before = client.get("/sentiment/models").json()["models"][0]
        upgrader = client.app.state.upgrader  # type: ignore[attr-defined]
        unchanged = upgrader.check()
        shutil.move(aside, ensemble)
        switched = upgrader.check()
        after = client.get("/sentiment/models").json()["models"][0]
        ready = client.get("/readyz").json()
        labelled = client.post("/sentiment", json={"texts": ["Loved it."]}).json()["results"][0]

    assert before["model_version"] == network.name
    assert after["val_acc"] > before["val_acc"]  # the premise
    assert (unchanged, switched) == (False, True)
    assert after["model_version"] == labelled["model_version"] == ensemble.name
    assert ready["info"]["models"]["en"]["model_version"] == ensemble.name
    assert any(name.startswith(f"model:en={ensemble.name};") for name in ready["checks"])


def test_a_pinned_model_is_never_switched(upgrade_data_dir: Path, tmp_path: Path) -> None:
    models = upgrade_data_dir / "models"
    network = models / read_metadata(list_models(models, KIND_FROZEN_ENSEMBLE)[0])["network"]
    settings = settings_for(upgrade_data_dir, tmp_path).model_copy(update={"model_version": network.name})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        switched = client.app.state.upgrader.check()  # type: ignore[attr-defined]
        served = client.get("/sentiment/models").json()["models"][0]["model_version"]

    assert (switched, served) == (False, network.name)
