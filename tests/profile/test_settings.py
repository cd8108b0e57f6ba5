"""The profile service's secrets: the public dev PII key only outside prod."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from services.profile.settings import DEV_PII_KEY, ProfileSettings


@pytest.mark.parametrize("pii_key", [None, DEV_PII_KEY, "change-me-pii-key", "CHANGE-ME-profile-pii-key"])
def test_prod_refuses_a_public_pii_key_naming_the_variable(pii_key: str | None) -> None:
    values: dict[str, object] = {"environment": "prod"}
    if pii_key is not None:
        values["pii_key"] = SecretStr(pii_key)
    with pytest.raises(ValidationError, match="CRM_PROFILE_PII_KEY"):
        ProfileSettings.model_validate(values)


def test_dev_keeps_the_dev_key_and_prod_takes_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ProfileSettings.model_validate({"environment": "dev"}).uses_dev_pii_key
    monkeypatch.setenv("CRM_PROFILE_ENVIRONMENT", "prod")
    monkeypatch.setenv("CRM_PROFILE_PII_KEY", "a-secret-of-our-own-" + "z" * 24)
    settings = ProfileSettings()
    assert settings.environment == "prod"
    assert not settings.uses_dev_pii_key
    monkeypatch.setenv("CRM_PROFILE_INTERNAL_API_KEY", "change-me-internal-key")
    with pytest.raises(ValidationError, match="CRM_PROFILE_INTERNAL_API_KEY"):
        ProfileSettings()
