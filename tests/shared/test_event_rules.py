"""What a valid event is beyond its schema: plausible times, bounded finite amounts, printable ids.

The rules live in the contract's validators, so every consumer dead-letters what the gateway refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from shared.contracts import CloudEvent, EventTypeName, dead_letter_topic, payload_model
from shared.contracts.events import Identify, Purchase
from shared.db import EventLedger, make_engine
from shared.kafka import DLQ_DETAIL, DLQ_REASON, EventConsumer, EventPublisher, ensure_topics
from shared.settings import KafkaSettings, ServiceSettings, get_event_rules
from tests.shared.bus_support import applied, applied_count, metadata, recording_handler, wait_for
from tests.shared.test_kafka import read_all


@pytest.fixture
def rules_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set CRM_EVENTS_* for one test; the cached rules are re-read before and after it."""
    get_event_rules.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_event_rules.cache_clear()


def _purchase(customer_id: str = "c1", amount: float = 20.0, price: float = 10.0) -> dict[str, Any]:
    return {
        "customer": {"customer_id": customer_id},
        "order_id": "o1",
        "amount": amount,
        "items": [{"item_id": "sku-1", "quantity": 2, "price": price}],
    }


def _envelope(time: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "e1", "source": "/tests", "type": "crm.purchase.v1", "time": time, "data": data or {}}


@pytest.mark.parametrize(
    "time",
    ["9999-12-31T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00", "1969-12-31T23:59:59Z"],
)
def test_implausible_times_are_refused(time: str) -> None:
    with pytest.raises(ValidationError) as raised:
        CloudEvent.model_validate(_envelope(time))
    assert raised.value.errors()[0]["loc"] == ("time",)
    assert "CRM_EVENTS_" in raised.value.errors()[0]["msg"]


def test_history_and_small_clock_skew_are_accepted() -> None:
    for when in (
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1997, 9, 20, tzinfo=UTC),
        datetime.now(UTC) + timedelta(hours=23),
    ):
        assert CloudEvent.model_validate(_envelope(when.isoformat())).time == when


def test_time_floor_and_skew_are_settings(rules_env: pytest.MonkeyPatch) -> None:
    rules_env.setenv("CRM_EVENTS_TIME_FLOOR", "1990-01-01T00:00:00Z")
    rules_env.setenv("CRM_EVENTS_MAX_FUTURE_SKEW_S", "60")
    get_event_rules.cache_clear()
    with pytest.raises(ValidationError, match="1990-01-01"):
        CloudEvent.model_validate(_envelope("1985-06-01T00:00:00Z"))
    with pytest.raises(ValidationError, match="60 s in the future"):
        CloudEvent.model_validate(_envelope((datetime.now(UTC) + timedelta(minutes=5)).isoformat()))
    assert CloudEvent.model_validate(_envelope("1997-06-01T00:00:00Z")).time.year == 1997


@pytest.mark.parametrize(
    ("amount", "price"),
    [(1e308, 10.0), (20.0, 1e308), (float("inf"), 10.0), (float("nan"), 10.0), (1e9 + 1, 1.0)],
)
def test_amounts_must_be_finite_and_bounded(amount: float, price: float) -> None:
    with pytest.raises(ValidationError):
        Purchase.model_validate(_purchase(amount=amount, price=price))


def test_amount_bound_is_a_setting(rules_env: pytest.MonkeyPatch) -> None:
    assert Purchase.model_validate(_purchase(amount=5000.0)).amount == 5000.0
    rules_env.setenv("CRM_EVENTS_MAX_AMOUNT", "1000")
    get_event_rules.cache_clear()
    with pytest.raises(ValidationError, match="CRM_EVENTS_MAX_AMOUNT"):
        Purchase.model_validate(_purchase(amount=5000.0))


def test_an_invalid_rule_setting_fails_naming_the_variable(rules_env: pytest.MonkeyPatch) -> None:
    rules_env.setenv("CRM_EVENTS_MAX_AMOUNT", "inf")
    get_event_rules.cache_clear()
    with pytest.raises(ValidationError, match="CRM_EVENTS_MAX_AMOUNT"):
        get_event_rules()


def test_a_service_with_invalid_rules_stops_at_start_up(rules_env: pytest.MonkeyPatch) -> None:
    rules_env.setenv("CRM_EVENTS_MAX_FUTURE_SKEW_S", "soon")
    get_event_rules.cache_clear()
    with pytest.raises(ValidationError, match="CRM_EVENTS_MAX_FUTURE_SKEW_S"):
        ServiceSettings()


@pytest.mark.parametrize(
    "customer_id",
    ["a\x00b", "bell\x07", "tab\tinside", "esc\x1b[31m", "zero\u200bwidth", "bidi\u202eevil", "x" * 201],
)
def test_identifiers_must_be_printable_and_bounded(customer_id: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Purchase.model_validate(_purchase(customer_id=customer_id))
    assert raised.value.errors()[0]["loc"][:2] == ("customer", "customer_id")


def test_printable_identifiers_in_any_script_are_accepted() -> None:
    for customer_id in ("shop-customer-42", "Zoë Ångström", "顧客-7", "cus_0a1b2c"):
        assert Purchase.model_validate(_purchase(customer_id=customer_id)).customer.customer_id == customer_id


def test_text_keeps_line_breaks_but_not_other_control_characters() -> None:
    review = payload_model(EventTypeName.REVIEW)
    assert review is not None
    kept = review.model_validate({"customer": {"customer_id": "c1"}, "text": "good\n\tvery\r\ngood"})
    assert kept.text == "good\n\tvery\r\ngood"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        review.model_validate({"customer": {"customer_id": "c1"}, "text": "nul\x00byte"})


def test_traits_and_extension_attributes_are_shallow() -> None:
    deep: dict[str, Any] = {}
    level = deep
    for _ in range(300):
        level["a"] = {}
        level = level["a"]
    with pytest.raises(ValidationError, match="nest deeper"):
        Identify.model_validate({"customer": {"customer_id": "c1"}, "traits": deep})
    with pytest.raises(ValidationError, match="not finite"):
        Identify.model_validate({"customer": {"customer_id": "c1"}, "traits": {"score": float("inf")}})
    assert Identify.model_validate({"customer": {"customer_id": "c1"}, "traits": {"a": {"b": [1, 2]}}})
    with pytest.raises(ValidationError):
        CloudEvent.model_validate({**_envelope("2020-01-01T00:00:00Z"), "traceparent": {"nested": [1]}})
    assert CloudEvent.model_validate({**_envelope("2020-01-01T00:00:00Z"), "traceparent": "00-ab"})


def test_hostile_records_are_dead_lettered_with_a_reason_and_good_ones_applied(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    topic = f"test.hostile.{unique}"
    ensure_topics(kafka_settings, [topic])
    engine = make_engine(f"sqlite:///{tmp_path}/effects.db")
    metadata.create_all(engine)

    def record(index: int, time: str, data: dict[str, Any], **extra: Any) -> bytes:
        kind = "crm.purchase.v1" if "order_id" in data else "crm.product_view.v1"
        envelope = {"specversion": "1.0", "id": f"{unique}-{index}", "source": "/tests",
                    "type": kind, "time": time, "data": data, **extra}  # fmt: skip
        return json.dumps(envelope).encode()

    now = datetime.now(UTC).isoformat()
    hostile = [
        record(1, "9999-12-31T00:00:00Z", _purchase()),
        record(2, "0001-01-01T00:00:00Z", _purchase()),
        record(3, now, _purchase(amount=1e308)),
        record(4, now, _purchase(customer_id="nul\x00bel\x07")),
        record(5, now, _purchase(), ext={"deep": [[[1]]]}),
        b"[" * 5000 + b"]" * 5000,
    ]
    good = [
        record(100 + i, now, {"customer": {"customer_id": "c"}, "item_id": f"item-{i}"}) for i in range(3)
    ]
    publisher = EventPublisher(kafka_settings)
    # Good events interleaved with the hostile ones, all on one partition (one key), in this order.
    for value in [good[0], hostile[0], good[1], hostile[1], good[2], *hostile[2:]]:
        publisher.publish_raw(topic, value, b"c")
    publisher.flush()
    publisher.close()

    consumer = EventConsumer(
        settings=kafka_settings,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=recording_handler("only"),
        ledger=EventLedger(engine, f"g-{unique}"),
    ).start()
    try:
        assert wait_for(lambda: applied_count(engine) == len(good))
        dead = read_all(kafka_settings, dead_letter_topic(topic), expected=len(hostile))
    finally:
        consumer.stop()
    with engine.connect() as connection:
        applied_ids = {r.event_id for r in connection.execute(select(applied.c.event_id))}
    assert applied_ids == {f"{unique}-{100 + i}" for i in range(3)}
    assert [h[DLQ_REASON] for h in dead] == [
        "invalid_envelope",
        "invalid_envelope",
        "invalid_payload",
        "invalid_payload",
        "invalid_envelope",
        "invalid_json",
    ]
    assert "CRM_EVENTS_MAX_FUTURE_SKEW_S" in dead[0][DLQ_DETAIL]
    assert "CRM_EVENTS_TIME_FLOOR" in dead[1][DLQ_DETAIL]
    assert "CRM_EVENTS_MAX_AMOUNT" in dead[2][DLQ_DETAIL]
    assert "customer_id" in dead[3][DLQ_DETAIL]
