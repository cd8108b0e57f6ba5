"""``crm up``'s demo load waits for a consumer group's committed offsets, on the real broker: it returns once
the group has applied every event, and reports how far it got when it has not."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from services.fleet import DemoLoad, Fleet, FleetError
from shared.db import EventLedger, make_engine
from shared.kafka import EventConsumer, EventPublisher, InboundEvent, ensure_topics
from shared.settings import KafkaSettings
from tests.shared.bus_support import wait_for
from tests.shared.test_kafka import view


def test_wait_applied_follows_the_groups_commits(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    topic = f"test.demo.{unique}"
    ensure_topics(kafka_settings, [topic])
    publisher = EventPublisher(kafka_settings)
    publisher.publish_and_wait([(topic, view(f"c{n % 5}", n), f"c{n % 5}") for n in range(60)])
    publisher.close()
    load = DemoLoad(
        Fleet(services=[], bootstrap=kafka_settings.bootstrap), rate=0, stop=threading.Event(), progress=False,
        timeout_s=2, poll_s=0.2,
    )  # fmt: skip
    group = f"g-{unique}"
    with pytest.raises(FleetError, match="applied 0 of 60"):
        load.wait_applied("nobody", group, [topic])  # nothing consumed yet

    applied: list[InboundEvent] = []
    consumer = EventConsumer(
        settings=kafka_settings,
        group_id=group,
        topics=[topic],
        handler=lambda events, _session: applied.extend(events),
        ledger=EventLedger(make_engine(f"sqlite:///{tmp_path}/ledger.db"), group),
    ).start()
    try:
        assert wait_for(lambda: len(applied) == 60)
        load.timeout_s = 30
        load.wait_applied("tests", group, [topic])  # returns: every offset is committed
    finally:
        consumer.stop()
