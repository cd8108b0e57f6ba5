"""Triage latency of one message (language, intent, entities, urgency, routing; what a consumer does per
message minus the database) and messages/s in batches, on CPU.

    .venv/bin/python bench/support_latency.py [--messages 600] [--batch 64] [--threads 1]

Fits the default catalog with both encoders (MiniLM for English, e5 for Chinese, built into
var/support/models/e5-zh if missing), warms up, then times each held-out test message alone (p50/p99) and
the whole set in batches. Writes bench/results/support_latency.json (`p99_ms`, `messages_per_s`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from services.support import repository
from services.support.ml.dataset import held_out_test
from services.support.ml.triage import CustomerContext
from services.support.service import SupportService
from services.support.settings import SupportSettings
from shared.db import make_engine, make_session_factory, sqlite_url
from shared.e5 import build_base

RESULTS = Path(__file__).parent / "results"
STORE_EXAMPLES = (
    "What time does the Leeds store open on Sunday?",
    "Is there parking at your Manchester shop?",
    "Are dogs allowed in your stores?",
    "Can I visit the showroom without an appointment?",
    "Where is your nearest store?",
    "门店几点开门",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the service's default is 1)")
    parser.add_argument("--data-dir", type=Path, default=Path("var/support-bench"))
    args = parser.parse_args()
    target = Path("var/support/models/e5-zh")
    if not (target / "config.json").is_file():
        build_base(target, chinese_only=True)
    data_dir = args.data_dir
    (data_dir / "models").mkdir(parents=True, exist_ok=True)
    link = data_dir / "models" / "e5-zh"
    if not link.exists():
        link.symlink_to(target.resolve())
    settings = SupportSettings(data_dir=str(data_dir), consume_events=False, threads=args.threads)
    engine = make_engine(sqlite_url(data_dir, "support"))
    repository.create_tables(engine)
    service = SupportService(settings, make_session_factory(engine))
    threadpool_limits(limits=args.threads)  # as the service's lifespan does
    service.load()
    torch.set_num_threads(args.threads)
    # What PUT /intents waits for: a refit on the stored catalog (its examples' vectors already memoised,
    # as in a running service), then the same with six new examples to embed.
    refits = []
    for _ in range(3):
        started = time.perf_counter()
        service.refit()
        refits.append(time.perf_counter() - started)
    catalog = [
        {"name": r.name, "description": r.description, "examples": r.examples}
        for r in service.intents(service.session_factory())
    ]
    catalog.append(
        {
            "name": "store_visit",
            "description": "Visiting a store.",
            "examples": [{"text": t} for t in STORE_EXAMPLES],
        }
    )
    session = service.session_factory()
    started = time.perf_counter()
    service.replace_catalog(session, catalog)
    catalog_change_s = time.perf_counter() - started
    session.rollback()
    texts = [m.text for m in held_out_test()]
    texts = (texts * (args.messages // len(texts) + 1))[: args.messages]
    context = CustomerContext()
    for text in texts[:20]:
        service.triage_texts([text], [context], [None])
    single = []
    for text in texts:
        started = time.perf_counter()
        service.triage_texts([text], [context], [None])
        single.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    for i in range(0, len(texts), args.batch):
        chunk = texts[i : i + args.batch]
        service.triage_texts(chunk, [context] * len(chunk), [None] * len(chunk))
    elapsed = time.perf_counter() - started
    result = {
        "p50_ms": float(np.percentile(single, 50)),
        "p99_ms": float(np.percentile(single, 99)),
        "messages_per_s": len(texts) / elapsed,
        "refit_s": float(np.median(refits)),
        "catalog_change_s": catalog_change_s,
        "messages": len(texts),
        "batch": args.batch,
        "torch_threads": args.threads,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python bench/support_latency.py --messages {args.messages} --batch {args.batch} --threads {args.threads}",
    }
    print(f"{'metric':<20}{'value':>10}")
    for key in ("p50_ms", "p99_ms", "messages_per_s", "refit_s", "catalog_change_s"):
        print(f"{key:<20}{result[key]:>10.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "support_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'support_latency.json'}")


if __name__ == "__main__":
    main()
