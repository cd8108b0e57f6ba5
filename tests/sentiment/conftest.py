"""A first-start model trained once per test session (real MiniLM, real data, capped samples)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.sentiment.training import train_chinese, train_first_start


@pytest.fixture(scope="session")
def sentiment_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("sentiment")
    train_first_start(data_dir, per_set_cap=500, test_cap=200)
    train_chinese(data_dir)
    return data_dir
