"""A real browser (Debian's chromium, driven by Playwright) on the console of the session's real fleet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.console.support import CUSTOMER, EMAIL, HOSTILE, NAME, chromium_path, sign_in
from tests.fleet_support import RunningFleet, wait_until

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extras")


@pytest.fixture(scope="session")
def console_fleet(real_fleet: RunningFleet) -> RunningFleet:
    """The session fleet (demo data with the MovieLens catalog, so items have names) with an email and a
    name for one demo customer, and a hostile review of theirs."""
    with real_fleet.client() as client:
        sent = client.post(
            "/v1/events",
            json=[
                {
                    "type": "identify",
                    "customer": {"customer_id": CUSTOMER, "email": EMAIL},
                    "traits": {"name": NAME},
                },
                {
                    "type": "review",
                    "customer": {"customer_id": CUSTOMER},
                    "text": HOSTILE,
                    "stars": 1,
                },
            ],
        )
        assert sent.status_code == 202, sent.text

        def ready() -> bool:
            found = client.get("/v1/customers/lookup", params={"type": "email", "value": EMAIL})
            if found.status_code != 200:
                return False
            c360 = client.get(f"/v1/customers/{CUSTOMER}").json()
            recs = (c360.get("recommendations") or {}).get("items") or []
            reviews = client.get(
                f"/v1/customers/{CUSTOMER}/timeline", params={"type": "crm.review.v1"}
            ).json()
            return bool(recs) and all(i.get("name") for i in recs) and bool(reviews.get("items"))

        wait_until(ready, timeout_s=180, what="the console's test customer, with named recommendations")
    return real_fleet


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, console_fleet: RunningFleet) -> Iterator[Any]:
    signed_in = sign_in(browser, console_fleet, console_fleet.admin_key)
    yield signed_in
    signed_in.context.close()
