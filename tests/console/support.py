"""Constants and helpers of the console's browser tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fleet_support import RunningFleet

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LAPTOP = {"width": 1366, "height": 900}
TABLET = {"width": 820, "height": 1180}
CUSTOMER = "ml-1"
EMAIL = "ada.console@example.com"
NAME = "Ada Lovelace"
HOSTILE = '<script>window.hacked = true</script><img src=x onerror="window.hacked=true"> broke on day one'


def chromium_path() -> str:
    """Debian's chromium; installed with apt-get when missing (skips only when that is impossible)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and apt-get cannot install it here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"chromium could not be installed with apt-get: {exc}")
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("apt-get installed chromium but no chromium executable is on PATH")
    return found


def sign_in(browser: Any, fleet: RunningFleet, key: str, viewport: dict[str, int] = LAPTOP) -> Any:
    """A page of a fresh browser context, signed in to the console with ``key``."""
    context = browser.new_context(base_url=fleet.gateway, viewport=viewport)
    page = context.new_page()
    page.goto("/console/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/search")
    return page


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def create_key(fleet: RunningFleet, *scopes: str) -> str:
    with fleet.client() as client:
        created = client.post(
            "/v1/admin/keys", json={"name": f"console {' '.join(scopes)}", "scopes": list(scopes)}
        )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def gateway_get(fleet: RunningFleet, path: str, **params: str | int | float | None) -> httpx.Response:
    with fleet.client() as client:
        return client.get(path, params=params)
