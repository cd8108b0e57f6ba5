"""The resolved interaction the profile republishes: the event as received, with the canonical id as
``subject``, whether it is built from the record's bytes or re-serialised."""

from __future__ import annotations

import json
from typing import Any

from services.profile.service import resolved_json
from shared.contracts import CloudEvent, EventTypeName
from shared.contracts.events import CustomerRef, Review
from shared.kafka import InboundEvent, parse_record


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    return dict(pairs)


def _consumed(raw: bytes) -> InboundEvent:
    typed, payload = parse_record(raw)
    return InboundEvent(typed, payload, "crm.interactions.received.v1", 0, 7, raw)


def test_resolved_event_is_the_record_with_the_canonical_subject() -> None:
    event = CloudEvent.new(
        EventTypeName.REVIEW,
        Review(customer=CustomerRef(email="ada@example.com"), text='Says "subject": fine', stars=4),
        source="/shop",
    )
    raw = event.to_json_bytes()
    out = resolved_json(_consumed(raw), "c-42")
    assert out.endswith(raw[1:])  # built from the record's own bytes
    resolved = json.loads(out, object_pairs_hook=_no_duplicate_keys)
    assert resolved == {**json.loads(raw), "subject": "c-42"}
    assert CloudEvent.model_validate(resolved).data == event.data


def test_a_record_with_a_subject_already_is_re_serialised_with_the_new_one() -> None:
    body = json.loads(
        CloudEvent.new(
            EventTypeName.REVIEW, Review(customer=CustomerRef(customer_id="old"), text="ok"), source="/s"
        ).to_json_bytes()
    )
    for subject in (None, "old"):
        raw = json.dumps({**body, "subject": subject}).encode()
        resolved = json.loads(resolved_json(_consumed(raw), "c-42"), object_pairs_hook=_no_duplicate_keys)
        assert resolved["subject"] == "c-42"
        assert resolved["id"] == body["id"]
        assert resolved["data"] == body["data"]
