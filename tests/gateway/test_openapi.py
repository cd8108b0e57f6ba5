"""A bounded schemathesis run against the gateway's OpenAPI in front of the real fleet: no 5xx, and no
answer (the real services' bodies included) that contradicts the documented schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fleet_support import RunningFleet

# The gateway runs in this process; kafka-python's background threads draw from the global `random`
# (reconnect jitter) while Hypothesis generates a case, which Hypothesis takes for strategy misuse.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Do not use the .random. module inside strategies"),
    pytest.mark.slow,
]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def gateway(real_fleet: RunningFleet) -> tuple[str, str]:
    """The fleet's gateway process in front of the real services, and its admin key."""
    return real_fleet.gateway, real_fleet.admin_key


def _run(schema: Any, gateway_url: str, headers: dict[str, str], max_examples: int) -> list[str]:
    """Every operation, ``max_examples`` generated cases each; returns the failures found."""
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30  # every /v1 operation is exercised
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def run(case: Any) -> None:
            case.call_and_validate(base_url=gateway_url, headers=headers, checks=CHECKS, timeout=10)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect: one run reports every failing operation
            details = [str(sub)[:800] for sub in getattr(exc, "exceptions", ())]
            failures.append(f"{operation.label}: {str(exc)[:1500]} {details}")
    return failures


def test_gateway_honours_its_openapi(gateway: tuple[str, str]) -> None:
    gateway_url, admin_key = gateway
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    failures = _run(schema, gateway_url, {"X-API-Key": admin_key}, max_examples=10)
    assert not failures, "\n\n".join(failures)


def test_gateway_without_a_key_answers_in_schema(gateway: tuple[str, str]) -> None:
    gateway_url, _ = gateway
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    failures = _run(schema, gateway_url, {}, max_examples=2)
    assert not failures, "\n\n".join(failures)
