"""Fixtures of the recsys tests: one real DLAE model fitted on ml-100k, shared by the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.recsys.data import load_movielens_100k
from services.recsys.service import ModelStore
from services.recsys.training import train_dlae

# One grid point keeps the fit at ~2 s; the bench tunes the full grid.
FAST_GRID = [(300.0, 0.55)]


@pytest.fixture(scope="session")
def movielens_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    users, items, _, _ = load_movielens_100k()
    models_dir = tmp_path_factory.mktemp("recsys-models")
    ModelStore(models_dir, keep=5).publish(train_dlae(users, items, grid=FAST_GRID))
    return models_dir


@pytest.fixture
def data_dir_with_model(tmp_path: Path, movielens_model_dir: Path) -> Path:
    """A fresh data_dir whose models/ holds the ml-100k model as the current version."""
    shutil.copytree(movielens_model_dir, tmp_path / "models")
    return tmp_path
