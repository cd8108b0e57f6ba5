"""CloudEvents 1.0 envelope in structured JSON mode.

The ``id`` is the idempotency key: a consumer group applies an event id at most once. Producers that
replay data derive ids deterministically (see :func:`stable_event_id`) so a replay twice is harmless.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Namespace for ids derived from source records (uuid5), fixed forever.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3a52-5f0e-4c1e-9b7a-2d8c0e7b9a41")


def stable_event_id(*parts: object) -> str:
    """A deterministic event id from the parts that identify a source record."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "/".join(str(p) for p in parts)))


def utcnow() -> datetime:
    return datetime.now(UTC)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event (structured mode). ``data`` is validated against the payload model
    registered for ``type`` by the consumer (see ``shared.contracts.registry``)."""

    model_config = ConfigDict(extra="allow", frozen=False)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500, examples=["/shop/checkout"])
    type: str = Field(min_length=1, max_length=200, examples=["crm.purchase.v1"])
    # Kept in the offset it was sent with (no per-event conversion on the consumer hot path);
    # aware datetimes compare by instant, and the fleet's own producers send UTC.
    time: AwareDatetime = Field(default_factory=utcnow)
    subject: str | None = Field(
        default=None,
        max_length=200,
        description="The canonical customer id once the profile service has resolved the event.",
    )
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: dict[str, Any]

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
            id=id or str(uuid.uuid4()),
            source=source,
            type=type,
            time=time or utcnow(),
            subject=subject,
            data=payload,
        )

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
