"""`crm up` (what `make up` runs): every service ready, demo data flowing, Ctrl-C leaves no process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.fleet import SERVICE_PORTS, available_services
from tests.shared.bus_support import wait_for

PORT_OFFSET = 100


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc, Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def events_applied_by_profile(client: httpx.Client) -> float:
    text = client.get(f"http://127.0.0.1:{SERVICE_PORTS['profile'] + PORT_OFFSET}/metrics").text
    return sum(
        float(m.group(1))
        for m in re.finditer(
            r'^crm_events_consumed_total\{[^}]*group="crm-profile[^"]*"[^}]*\} (\S+)$', text, re.M
        )
    )


@pytest.mark.slow
def test_crm_up_serves_every_service_loads_demo_data_and_stops_cleanly(tmp_path: Path) -> None:
    services = available_services()
    assert services, "no service exists yet"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CRM_KAFKA_BOOTSTRAP", None)
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "up",
            "--data-dir",
            str(tmp_path / "var"),
            "--port-offset",
            str(PORT_OFFSET),
            "--demo-rate",
            "2000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert runner.stdout is not None
        while time.monotonic() < deadline:
            line = runner.stdout.readline()
            if not line:
                break
            output.append(line)
            if "The fleet is up" in line:
                break
        assert any("The fleet is up" in line for line in output), "".join(output[-40:])

        with httpx.Client(timeout=5) as client:
            for name in services:
                response = client.get(f"http://127.0.0.1:{SERVICE_PORTS[name] + PORT_OFFSET}/readyz")
                assert response.status_code == 200, (name, response.text)
            if "profile" in services:
                assert wait_for(lambda: events_applied_by_profile(client) > 100, timeout_s=90), (
                    "no demo data applied"
                )
        processes = descendants(runner.pid)
        assert len(processes) >= len(services) + 1  # every service and the broker
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            raise
        finally:
            if runner.stdout is not None:
                runner.stdout.close()
    assert runner.returncode == 0
    assert wait_for(lambda: not any(alive(p) for p in processes), timeout_s=10), [
        p for p in processes if alive(p)
    ]
