"""Churn test fixtures: one real from-events model trained on a CDNOW sample, shared by the session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.churn.ml.features import cdnow_histories, cutoffs_before
from services.churn.ml.model import ChurnModel
from services.churn.ml.training import load_current, save_version, train_events
from services.churn.settings import ChurnSettings


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models/ tree holding a real events model (1,500 CDNOW customers, three cutoffs: a few seconds)."""
    directory = tmp_path_factory.mktemp("churn-models")
    histories = cdnow_histories(max_customers=1500, seed=3)
    end = max(a.time for h in histories.values() for a in h)
    result = train_events(histories, cutoffs_before(end, 90, 3, 90), 90)
    save_version(result.model, directory)
    return directory


@pytest.fixture(scope="session")
def events_model(model_dir: Path) -> ChurnModel:
    model = load_current(model_dir, "events")
    assert model is not None
    return model


@pytest.fixture
def make_settings(tmp_path: Path, model_dir: Path) -> Callable[..., ChurnSettings]:
    def build(**overrides: Any) -> ChurnSettings:
        values: dict[str, Any] = {
            "data_dir": str(tmp_path / "churn"),
            "model_dir": str(model_dir),
            "train_on_start": False,
            "consume_events": False,
            "environment": "test",
        }
        values.update(overrides)
        return ChurnSettings(**values)

    return build
