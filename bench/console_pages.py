"""Server time of each console page on a running fleet: signs in with a key, reads every page N times.

    .venv/bin/python bench/console_pages.py --gateway http://127.0.0.1:8000 --key "$(cat var/dev-admin-key)"

The time is from sending the request to the last byte of the answer over loopback (the page and every
``/v1`` call it makes in parallel; no browser rendering). The 360 is read for customers not read before
(each first read fans out to the services) and again (served by the gateway's 360 cache). Prints a table;
writes bench/results/console_pages.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

RESULTS = Path(__file__).parent / "results" / "console_pages.json"


def sign_in(client: httpx.Client, key: str) -> None:
    client.get("/console/signin")
    answer = client.post(
        "/console/signin", data={"api_key": key, "csrf_token": client.cookies["crm_console_csrf"]}
    )
    if answer.status_code != 303:
        raise SystemExit(f"sign-in refused ({answer.status_code}): is this the gateway's admin key?")


def timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    answer = client.get(path)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"{path} answered {answer.status_code}")
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with httpx.Client(base_url=args.gateway, timeout=30) as client:
        sign_in(client, args.key)
        customers = [
            c["id"]
            for c in client.get(
                "/v1/customers", params={"limit": args.repeat}, headers={"X-API-Key": args.key}
            ).json()["items"]
        ]
        email_owner = next((c for c in customers), "")
        pages = {
            "search (empty: recent customers)": ["/console/search"] * args.repeat,
            "search results (as you type an id)": [f"/console/search/results?q={c}" for c in customers],
            "customer 360 (first read)": [f"/console/customers/{c}" for c in customers],
            "customer 360 (again)": [f"/console/customers/{c}" for c in customers],
            "timeline page": [f"/console/customers/{email_owner}/timeline?type=crm.rating.v1"] * args.repeat,
            "segments": ["/console/segments"] * args.repeat,
            "at risk": ["/console/at-risk"] * args.repeat,
            "live events": ["/console/live"] * args.repeat,
            "models": ["/console/models"] * args.repeat,
        }
        rows = []
        for name, paths in pages.items():
            times = sorted(timed(client, p) for p in paths)
            rows.append(
                {
                    "page": name,
                    "n": len(times),
                    "median_ms": round(statistics.median(times), 1),
                    "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1),
                    "max_ms": round(times[-1], 1),
                }
            )
    print(f"{'page':<38} {'n':>4} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for r in rows:
        print(f"{r['page']:<38} {r['n']:>4} {r['median_ms']:>10} {r['p95_ms']:>8} {r['max_ms']:>8}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": platform.processor() or platform.machine(),
                "gateway": args.gateway,
                "repeat": args.repeat,
                "pages": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
