"""CloudEvents 1.0 envelope in structured JSON mode.

The ``id`` is the idempotency key: a consumer group applies an event id at most once. Producers that
replay data derive ids deterministically (see :func:`stable_event_id`) so a replay twice is harmless.

Ids the fleet makes sort by time (UUIDv7, or a time-prefixed UUIDv8 for stable ids). Every consumer
group records the ids it applied in an index (``shared.db.EventLedger``); ids that sort by time land at
the end of that index, while random ids (UUIDv4) land all over it, and on SQLite that makes each batch
rewrite a share of the index that grows with it. External producers may send any unique id; time-ordered
ones (UUIDv7, ULID) keep their consumers fast.
"""

from __future__ import annotations

import os
import threading
import time as _time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from shared.settings import get_event_rules

# Printable text only: no control characters (C0, DEL, C1), and none of the invisible format characters
# that make two ids look alike (zero-width, bidi overrides, BOM). Used for ids, URIs and type names.
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]*$"

# Namespace for ids derived from source records (uuid5), fixed forever.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3a52-5f0e-4c1e-9b7a-2d8c0e7b9a41")

_VARIANT_RFC_9562 = 0x8000_0000_0000_0000  # the two variant bits, 0b10, at the top of the low 64 bits


def _time_ordered_uuid(unix_ms: int, version: int, random_bits: int) -> str:
    """48 bits of Unix milliseconds, the version nibble, 74 further bits (RFC 9562 layout)."""
    unix_ms = min(max(unix_ms, 0), (1 << 48) - 1)
    rand_a = (random_bits >> 62) & 0xFFF
    rand_b = random_bits & ((1 << 62) - 1)
    value = (unix_ms << 80) | (version << 76) | (rand_a << 64) | _VARIANT_RFC_9562 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_last_id = [0, 0]  # (unix ms, 12-bit sequence) of the newest id this process made
_id_lock = threading.Lock()


def new_event_id() -> str:
    """A fresh UUIDv7: unique, and increasing within this process (RFC 9562 method 3: the 12 bits after
    the version count ids made in the same millisecond)."""
    now = _time.time_ns() // 1_000_000
    with _id_lock:
        last_ms, sequence = _last_id
        if now <= last_ms:
            now, sequence = (last_ms, sequence + 1) if sequence < 0xFFF else (last_ms + 1, 0)
        else:
            sequence = 0
        _last_id[:] = [now, sequence]
    random_bits = (sequence << 62) | int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    return _time_ordered_uuid(now, 7, random_bits)


def stable_event_id(*parts: object, at: datetime | None = None) -> str:
    """A deterministic event id from the parts that identify a source record.

    With ``at`` (when the record happened) the id is time-prefixed (a UUIDv8: ``at`` in milliseconds,
    then 74 bits of the uuid5 of the parts) so that replayed history sorts by time like live events;
    without it, the plain uuid5.
    """
    named = uuid.uuid5(EVENT_ID_NAMESPACE, "/".join(str(p) for p in parts))
    if at is None:
        return str(named)
    return _time_ordered_uuid(int(at.timestamp() * 1000), 8, named.int)


def utcnow() -> datetime:
    return datetime.now(UTC)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event (structured mode). ``data`` is validated against the payload model
    registered for ``type`` by the consumer (see ``shared.contracts.registry``)."""

    model_config = ConfigDict(extra="allow", frozen=False)

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=PRINTABLE)] = Field(
        examples=["/shop/checkout"]
    )
    type: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)] = Field(
        examples=["crm.purchase.v1"]
    )
    # Kept in the offset it was sent with (no per-event conversion on the consumer hot path);
    # aware datetimes compare by instant, and the fleet's own producers send UTC.
    time: AwareDatetime = Field(
        default_factory=utcnow,
        description="When it happened: after CRM_EVENTS_TIME_FLOOR (1970-01-01) and at most "
        "CRM_EVENTS_MAX_FUTURE_SKEW_S (one day) past the receiver's clock.",
    )
    subject: Annotated[str, StringConstraints(pattern=PRINTABLE)] | None = Field(
        default=None,
        max_length=200,
        description="The canonical customer id once the profile service has resolved the event.",
    )
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: dict[str, Any]
    # CloudEvents extension attributes are scalars. Typing them so also bounds how deep an envelope nests
    # (a deep value would otherwise pass validation and fail later, when it is serialised).
    __pydantic_extra__: dict[str, str | int | float | bool | None] = Field(init=False)

    @field_validator("time")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        rules = get_event_rules()
        try:
            at = value.timestamp()
        except (OverflowError, OSError) as exc:
            raise ValueError("time is out of range") from exc
        if at < rules.time_floor_s:
            raise ValueError(f"time is before {rules.time_floor.isoformat()} (CRM_EVENTS_TIME_FLOOR)")
        if at > _time.time() + rules.max_future_skew_s:
            raise ValueError(
                f"time is more than {rules.max_future_skew_s:g} s in the future (CRM_EVENTS_MAX_FUTURE_SKEW_S)"
            )
        return value

    @classmethod
    def new(
        cls,
        type: str,
        data: BaseModel | dict[str, Any],
        *,
        source: str,
        subject: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
    ) -> CloudEvent:
        payload = data.model_dump(mode="json", exclude_none=True) if isinstance(data, BaseModel) else data
        return cls(
            id=id or new_event_id(),
            source=source,
            type=type,
            time=time or utcnow(),
            subject=subject,
            data=payload,
        )

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
