"""A bounded schemathesis run against the gateway's OpenAPI: no 5xx, no answer that contradicts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
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

from services.gateway.app import create_app
from shared.settings import KafkaSettings
from tests.gateway.conftest import make_settings
from tests.gateway.support import ADMIN_KEY, ServerThread, serving, stand_in_fleet

# The gateway runs in this process; kafka-python's background threads draw from the global `random`
# (reconnect jitter) while Hypothesis generates a case, which Hypothesis takes for strategy misuse.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the .random. module inside strategies")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def gateway_url(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kafka = KafkaSettings(
        bootstrap=kafka_bootstrap, partitions=2, session_timeout_ms=6000, heartbeat_interval_ms=500
    )
    data_dir: Path = tmp_path_factory.mktemp("gateway-openapi")
    with serving(stand_in_fleet()) as fleet:
        urls = {f"{name}_url": fleet.url for name in ("profile", "recsys", "sentiment", "churn")}
        settings = make_settings(
            kafka, data_dir, rate_limit_per_s=100_000.0, rate_limit_burst=100_000.0, **urls
        )
        server = ServerThread(create_app(settings)).start()
        try:
            yield server.url
        finally:
            server.stop()


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


def test_gateway_honours_its_openapi(gateway_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    failures = _run(schema, gateway_url, {"X-API-Key": ADMIN_KEY}, max_examples=10)
    assert not failures, "\n\n".join(failures)


def test_gateway_without_a_key_answers_in_schema(gateway_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    failures = _run(schema, gateway_url, {}, max_examples=2)
    assert not failures, "\n\n".join(failures)
