"""The event contract: generated documents match the models, payload rules hold."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from shared.contracts import (
    EVENT_TYPES,
    TOPICS,
    CloudEvent,
    EventTypeName,
    Topic,
    new_event_id,
    payload_model,
    stable_event_id,
)
from shared.contracts.docs import event_json_schemas, render_asyncapi, render_schema
from shared.contracts.envelope import EVENT_ID_NAMESPACE
from shared.contracts.events import CustomerRef, Purchase

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_asyncapi_matches_the_models() -> None:
    committed = (DOCS / "asyncapi.yaml").read_text()
    assert committed == render_asyncapi(), "docs/asyncapi.yaml is stale: run `crm contracts export`"


def test_committed_json_schemas_match_the_models() -> None:
    generated = event_json_schemas()
    committed = {p.name for p in (DOCS / "schemas").glob("*.json")}
    assert committed == set(generated), "docs/schemas has missing or extra files: run `crm contracts export`"
    for name, schema in generated.items():
        assert (DOCS / "schemas" / name).read_text() == render_schema(schema), f"{name} is stale"


def test_asyncapi_lists_every_topic_with_producers_consumers_and_messages() -> None:
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    for topic, info in TOPICS.items():
        channel = document["channels"][topic.value]
        assert channel["x-producers"] == list(info.producers)
        assert channel["x-consumers"] == list(info.consumers)
        assert f"{topic.value}.dlq" in document["channels"]
    assert set(document["components"]["messages"]) == set(EVENT_TYPES)


def test_schema_file_accepts_a_valid_payload_and_rejects_an_invalid_one() -> None:
    schema = json.loads((DOCS / "schemas" / "crm.purchase.v1.json").read_text())
    good = {"customer": {"customer_id": "c1"}, "order_id": "o1", "amount": 10.0, "items": []}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "amount": -1}, schema)


def test_every_event_type_has_a_topic_and_model() -> None:
    for event_type, entry in EVENT_TYPES.items():
        assert payload_model(event_type) is entry.payload
        assert isinstance(entry.topic, Topic)
        assert event_type.startswith("crm.")
        assert event_type.endswith(".v1")


def test_customer_needs_an_identifier_and_is_keyed_by_the_most_stable_one() -> None:
    with pytest.raises(ValidationError, match="at least one identifier"):
        CustomerRef()
    assert CustomerRef(customer_id="c1", email="a@b.c").partition_key() == "c1"
    assert CustomerRef(anonymous_id="dev-9").partition_key() == "anon:dev-9"
    assert CustomerRef(email="Ada@Example.com").partition_key() == "email:ada@example.com"


def test_cloudevent_round_trips_and_keeps_time_zone_aware() -> None:
    event = CloudEvent.model_validate(
        {
            "specversion": "1.0",
            "id": "e1",
            "source": "/s",
            "type": EventTypeName.PURCHASE,
            "time": "2024-05-01T12:00:00+02:00",
            "data": {"customer": {"customer_id": "c1"}, "order_id": "o", "amount": 3},
        }
    )
    assert event.time == datetime(2024, 5, 1, 10, tzinfo=UTC)
    again = CloudEvent.model_validate_json(event.to_json_bytes())
    assert again == event
    assert Purchase.model_validate(again.data).currency == "USD"
    with pytest.raises(ValidationError):
        CloudEvent.model_validate({"specversion": "0.3", "id": "e", "source": "/s", "type": "t", "data": {}})


def test_cloudevent_time_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        CloudEvent.model_validate(
            {"id": "e", "source": "/s", "type": "t", "time": "2024-05-01T12:00:00", "data": {}}
        )


def test_new_event_ids_are_uuid7_and_sort_by_creation_time() -> None:
    first = [new_event_id() for _ in range(50)]
    time.sleep(0.002)
    later = new_event_id()
    assert len(set(first)) == 50
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in first)
    assert max(first) < later  # a later millisecond sorts after, as text and as the ledger compares
    assert CloudEvent.new(EventTypeName.IDENTIFY, {"customer": {"customer_id": "c1"}}, source="/t").id > later


def test_stable_event_ids_are_deterministic_and_time_prefixed_with_at() -> None:
    earlier, later = datetime(1997, 9, 20, tzinfo=UTC), datetime(1998, 4, 22, 12, tzinfo=UTC)
    assert stable_event_id("cdnow", "o1") == str(uuid.uuid5(EVENT_ID_NAMESPACE, "cdnow/o1"))
    assert stable_event_id("cdnow", "o1", at=later) == stable_event_id("cdnow", "o1", at=later)
    assert stable_event_id("cdnow", "o1", at=later) != stable_event_id("cdnow", "o2", at=later)
    stamped = uuid.UUID(stable_event_id("cdnow", "o1", at=later))
    assert stamped.version == 8
    assert stamped.variant == uuid.RFC_4122
    assert stamped.int >> 80 == int(later.timestamp() * 1000)
    assert stable_event_id("z", at=earlier) < stable_event_id("a", at=later)
