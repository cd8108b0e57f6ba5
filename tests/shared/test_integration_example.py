"""README's integration example: a plain kafka-python script, no project code, is accepted by the fleet's bus."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.contracts import Topic
from shared.contracts.events import Purchase
from shared.db import EventLedger, make_engine
from shared.kafka import EventConsumer, InboundEvent, ensure_topics
from shared.settings import KafkaSettings
from tests.shared.bus_support import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "publish_event.py"


def test_plain_kafka_python_script_publishes_an_event_the_bus_accepts(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    ensure_topics(kafka_settings, [Topic.INTERACTIONS])
    customer = f"ext-{unique}"
    # Run the script in isolation (-I: no project on sys.path), exactly as another company would.
    result = subprocess.run(
        [sys.executable, "-I", str(EXAMPLE), kafka_settings.bootstrap, customer],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    event_id = result.stdout.strip()

    received: list[InboundEvent] = []
    engine = make_engine(f"sqlite:///{tmp_path}/ledger.db")
    consumer = EventConsumer(
        settings=kafka_settings,
        group_id=f"g-{unique}",
        topics=[Topic.INTERACTIONS],
        handler=lambda events, _session: received.extend(e for e in events if e.id == event_id),
        ledger=EventLedger(engine, f"g-{unique}"),
    ).start()
    try:
        assert wait_for(lambda: bool(received), timeout_s=30), (
            f"error={consumer.error!r} assigned={consumer.assigned.is_set()}"
        )
    finally:
        consumer.stop()
    payload = received[0].payload
    assert isinstance(payload, Purchase)
    assert payload.customer.customer_id == customer
    assert payload.amount == 39.0
    assert payload.currency == "EUR"
