"""Runs the whole fleet locally: the embedded broker, every service that exists, demo data.

Each service is its own uvicorn process on its own port, logging to ``var/logs/<service>.log``.
Children run in their own process groups and are told to die with this process (PR_SET_PDEATHSIG),
so Ctrl-C, SIGTERM or a crash of the runner leaves no process behind.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.broker import EmbeddedBroker
from shared.logging import get_logger

log = get_logger(__name__)

# Start order matters only for the gateway, which fans out to the others.
SERVICE_PORTS: dict[str, int] = {
    "profile": 8001,
    "recsys": 8002,
    "sentiment": 8003,
    "churn": 8004,
    "gateway": 8000,
}
PACKAGE_DIR = Path(__file__).resolve().parent


def available_services() -> list[str]:
    """Services whose code exists (``services/<name>/app.py``), in start order."""
    return [name for name in SERVICE_PORTS if (PACKAGE_DIR / name / "app.py").exists()]


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the fleet runner dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()


class FleetError(RuntimeError):
    pass


class FleetInterrupted(FleetError):
    pass


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Fleet:
    data_dir: Path = Path("var")
    services: list[str] = field(default_factory=available_services)
    host: str = "127.0.0.1"
    port_offset: int = 0
    bootstrap: str | None = None
    admin_key: str | None = None
    # One random key per run: services accept only calls that present it (the gateway does).
    internal_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _broker: EmbeddedBroker | None = None
    _processes: list[ServiceProcess] = field(default_factory=list)

    def port_of(self, service: str) -> int:
        return SERVICE_PORTS[service] + self.port_offset

    def url_of(self, service: str) -> str:
        return f"http://{self.host}:{self.port_of(service)}"

    def start(self) -> None:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        if not self.bootstrap:
            self.bootstrap = os.environ.get("CRM_KAFKA_BOOTSTRAP") or None
        if not self.bootstrap:
            self._broker = EmbeddedBroker(log_path=self.data_dir / "logs" / "broker.log").start()
            self.bootstrap = self._broker.bootstrap
        self.admin_key = self.admin_key or self._dev_admin_key()
        for name in self.services:
            self._processes.append(self._spawn(name))

    def _dev_admin_key(self) -> str:
        """A stable dev admin key kept in var/, so a restart keeps working with the printed key."""
        path = self.data_dir / "dev-admin-key"
        if path.exists():
            return path.read_text().strip()
        key = f"crm_devadmin_{secrets.token_urlsafe(24)}"
        path.write_text(key)
        path.chmod(0o600)
        return key

    def _environment(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env["CRM_KAFKA_BOOTSTRAP"] = self.bootstrap or ""
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        prefix = f"CRM_{name.upper()}_"
        env.setdefault(prefix + "ENVIRONMENT", "dev")
        env.setdefault(prefix + "INTERNAL_API_KEY", self.internal_key)
        env.setdefault(prefix + "DATA_DIR", str((self.data_dir / name).resolve()))
        if name == "gateway":
            for other in SERVICE_PORTS:
                if other != "gateway":
                    env.setdefault(f"CRM_GATEWAY_{other.upper()}_URL", self.url_of(other))
            env.setdefault("CRM_GATEWAY_BOOTSTRAP_ADMIN_KEY", self.admin_key or "")
        return env

    def _spawn(self, name: str) -> ServiceProcess:
        log_path = self.data_dir / "logs" / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            f"services.{name}.app:create_app",
            "--factory",
            "--host",
            self.host,
            "--port",
            str(self.port_of(name)),
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "20",
        ]
        with log_path.open("ab") as output:
            process = subprocess.Popen(
                command,
                env=self._environment(name),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        log.info("service_started", service=name, port=self.port_of(name), pid=process.pid, log=str(log_path))
        return ServiceProcess(name, self.port_of(name), process, log_path)

    def wait_ready(self, timeout_s: float = 300.0, stop: threading.Event | None = None) -> dict[str, float]:
        """Poll every /readyz until 200; returns seconds to ready per service. Fails fast if one exits,
        and gives up as soon as ``stop`` is set (Ctrl-C while starting)."""
        started = time.monotonic()
        ready: dict[str, float] = {}
        with httpx.Client(timeout=2.0) as client:
            while len(ready) < len(self._processes):
                for service in self._processes:
                    if service.name in ready:
                        continue
                    if service.process.poll() is not None:
                        raise FleetError(
                            f"{service.name} exited with code {service.process.returncode}; "
                            f"last lines of {service.log_path}:\n{service.log_tail()}"
                        )
                    try:
                        if client.get(f"{service.url}/readyz").status_code == 200:
                            ready[service.name] = time.monotonic() - started
                            log.info(
                                "service_ready", service=service.name, seconds=round(ready[service.name], 1)
                            )
                    except httpx.HTTPError:
                        pass
                if stop is not None and stop.is_set():
                    raise FleetInterrupted("stopped while starting")
                if time.monotonic() - started > timeout_s:
                    waiting = [s.name for s in self._processes if s.name not in ready]
                    raise FleetError(
                        f"not ready after {timeout_s:.0f}s: {', '.join(waiting)} (see {self.data_dir}/logs)"
                    )
                if stop is not None:
                    stop.wait(0.5)
                else:
                    time.sleep(0.5)
        return ready

    def stop(self) -> None:
        """SIGTERM every service (they finish in-flight work and commit), then the broker."""
        for service in self._processes:
            if service.process.poll() is None:
                try:
                    os.killpg(service.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 25
        for service in self._processes:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(service.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                service.process.wait(timeout=5)
        self._processes.clear()
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    @property
    def broker(self) -> EmbeddedBroker | None:
        """The embedded broker this fleet started (None on a real Kafka)."""
        return self._broker

    def process_of(self, service: str) -> ServiceProcess:
        """The running process of one service (tests signal it: SIGSTOP to stall it, SIGKILL to crash it)."""
        return next(p for p in self._processes if p.name == service)

    def restart(self, service: str) -> ServiceProcess:
        """Start a service again after it died or was killed (same port, data and settings)."""
        old = self.process_of(service)
        if old.process.poll() is None:
            os.killpg(old.process.pid, signal.SIGKILL)
            old.process.wait(timeout=10)
        new = self._spawn(service)
        self._processes[self._processes.index(old)] = new
        return new

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def install_stop_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM both mean: stop the fleet cleanly."""

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
