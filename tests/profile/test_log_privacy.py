"""The profile API answers with decrypted e-mail and phone; its logs never hold them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.profile.conftest import event, feed


def test_decrypted_pii_is_answered_but_never_logged(
    client: TestClient, unique: str, capfd: pytest.CaptureFixture[str]
) -> None:
    email, phone = f"ada.{unique}@example.com", "+44 20 7946 0958"
    at = datetime.now(UTC) - timedelta(days=1)
    feed(
        client,
        [
            event(
                "identify",
                {"customer": {"customer_id": f"c-{unique}", "email": email, "phone": phone}},
                at=at,
            )
        ],
    )
    capfd.readouterr()
    found = client.get("/customers/lookup", params={"type": "email", "value": email}).json()
    profile = client.get(f"/customers/{found['customer_id']}").json()
    exported = client.get(f"/customers/{found['customer_id']}/export").text
    assert email in str(profile)  # the API does decrypt for its callers
    assert email in exported
    client.get("/customers/lookup", params={"type": "email", "value": "x" * 400})  # a 422 echoes input
    logged = capfd.readouterr()
    for secret in (email, email.split("@")[0], phone, phone.replace(" ", "")):
        assert secret not in logged.out + logged.err
