"""Run as a separate process by the crash test: applies one poll's events durably, then dies
(os._exit) exactly where the offsets would be committed, the worst moment for exactly-once."""

from __future__ import annotations

import os
import sys
import threading

from shared.db import EventLedger, make_engine
from shared.kafka import EventConsumer
from shared.settings import KafkaSettings
from tests.shared.bus_support import metadata, recording_handler


class DiesBeforeCommit(EventConsumer):
    def commit(self, offsets: object) -> None:  # type: ignore[override]
        os._exit(3)


def main() -> None:
    bootstrap, topic, group, db_url = sys.argv[1:5]
    engine = make_engine(db_url)
    metadata.create_all(engine)
    settings = KafkaSettings(bootstrap=bootstrap, session_timeout_ms=6000, heartbeat_interval_ms=500)
    consumer = DiesBeforeCommit(
        settings=settings,
        group_id=group,
        topics=[topic],
        handler=recording_handler("first"),
        ledger=EventLedger(engine, group),
    )
    consumer.run()
    threading.Event().wait(60)


if __name__ == "__main__":
    main()
