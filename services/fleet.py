"""Runs the whole fleet locally: the embedded broker, every service that exists, demo data.

Each service is its own uvicorn process on its own port, logging to ``var/logs/<service>.log``.
Children run in their own process groups and are told to die with this process (PR_SET_PDEATHSIG),
so Ctrl-C, SIGTERM or a crash of the runner leaves no process behind.

The demo (:class:`DemoLoad`) replays the MovieLens catalog, MovieLens 100k and the CDNOW sample shifted to
end now, waits until the services have applied it, then fits the profile's CLV and RFM clusters and the
recommender on all of it, so a demo customer's 360 is complete once ``demo_ready`` is logged.
"""

from __future__ import annotations

import ctypes
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from tqdm import tqdm

from shared.auth import API_KEY_HEADER
from shared.broker import EmbeddedBroker
from shared.contracts import Topic, utcnow
from shared.kafka import EventPublisher, ensure_topics
from shared.logging import get_logger
from shared.replay import cdnow_events, movielens_catalog_events, movielens_events, replay
from shared.settings import KafkaSettings

log = get_logger(__name__)

# Start order matters only for the gateway, which fans out to the others.
SERVICE_PORTS: dict[str, int] = {
    "profile": 8001,
    "recsys": 8002,
    "sentiment": 8003,
    "churn": 8004,
    "support": 8005,
    "gateway": 8000,
}
PACKAGE_DIR = Path(__file__).resolve().parent


def available_services() -> list[str]:
    """Services whose code exists (``services/<name>/app.py``), in start order."""
    return [name for name in SERVICE_PORTS if (PACKAGE_DIR / name / "app.py").exists()]


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
        service = spawn(
            name,
            f"services.{name}.app:create_app",
            self.port_of(name),
            env=self._environment(name),
            log_path=self.data_dir / "logs" / f"{name}.log",
            host=self.host,
        )
        log.info(
            "service_started",
            service=name,
            port=service.port,
            pid=service.process.pid,
            log=str(service.log_path),
        )
        return service

    def wait_ready(self, timeout_s: float = 300.0, stop: threading.Event | None = None) -> dict[str, float]:
        """Poll every /readyz until 200; returns seconds to ready per service. Fails fast if one exits,
        and gives up as soon as ``stop`` is set (Ctrl-C while starting)."""
        return wait_ready(self._processes, timeout_s, stop, logs=self.data_dir / "logs")

    def start_ready(self, timeout_s: float = 600.0) -> dict[str, float]:
        """:meth:`start`, then :meth:`wait_ready`; a fleet that does not get ready is stopped again."""
        self.start()
        try:
            return self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM every service (they finish in-flight work and commit), then the broker."""
        terminate(self._processes)
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


# -- starting processes: the fleet's services, and any other uvicorn app (benches, tests) ------------------


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the fleet runner dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()


def spawn(
    name: str,
    target: str,
    port: int,
    *,
    env: Mapping[str, str],
    log_path: Path,
    host: str = "127.0.0.1",
    factory: bool = True,
    app_dir: Path | None = None,
) -> ServiceProcess:
    """``target`` (``module:app``, or ``module:create_app`` with ``factory``) as its own uvicorn process in its
    own process group, output to ``log_path``, told to die with this process; SIGTERM lets it finish its
    in-flight work (20 s)."""
    command = [sys.executable, "-m", "uvicorn", target, "--host", host, "--port", str(port)]
    command += ["--log-level", "warning", "--timeout-graceful-shutdown", "20"]
    if factory:
        command.append("--factory")
    if app_dir is not None:
        command += ["--app-dir", str(app_dir)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as output:
        process = subprocess.Popen(
            command,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    return ServiceProcess(name, port, process, log_path)


def wait_ready(
    processes: Sequence[ServiceProcess],
    timeout_s: float,
    stop: threading.Event | None = None,
    *,
    logs: Path | None = None,
) -> dict[str, float]:
    """Poll each process's /readyz until 200; returns seconds to ready by name. Fails fast if one exits, and
    gives up as soon as ``stop`` is set."""
    started = time.monotonic()
    ready: dict[str, float] = {}
    with httpx.Client(timeout=2.0) as client:
        while len(ready) < len(processes):
            for service in processes:
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
                        log.info("service_ready", service=service.name, seconds=round(ready[service.name], 1))
                except httpx.HTTPError:
                    pass
            if stop is not None and stop.is_set():
                raise FleetInterrupted("stopped while starting")
            if time.monotonic() - started > timeout_s:
                waiting = [s.name for s in processes if s.name not in ready]
                where = logs or processes[0].log_path.parent
                raise FleetError(f"not ready after {timeout_s:.0f}s: {', '.join(waiting)} (see {where})")
            if stop is not None:
                stop.wait(0.5)
            else:
                time.sleep(0.5)
    return ready


def terminate(processes: Sequence[ServiceProcess], grace_s: float = 25.0) -> None:
    """SIGTERM each process group (they finish in-flight work and commit); SIGKILL what is left after
    ``grace_s``."""
    for service in processes:
        if service.process.poll() is None:
            try:
                os.killpg(service.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for service in processes:
        try:
            service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(service.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            service.process.wait(timeout=5)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def free_port_offset(ports: Iterable[int] = SERVICE_PORTS.values(), attempts: int = 100) -> int:
    """A random offset at which every one of ``ports`` is free (two fleets on one machine, or a `crm up`
    beside tests and benches, do not collide)."""
    wanted = list(ports)
    for _ in range(attempts):
        offset = random.randrange(1000, 50000, 10)
        if all(port_is_free(port + offset) for port in wanted):
            return offset
    raise FleetError("no free range of ports for a fleet")


# Whose committed offsets say the demo is applied: (service, consumer group, topics), in the order the data
# flows (the profile republishes what the others read). The groups are the services' defaults.
DEMO_CONSUMERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("profile", "crm-profile", (Topic.INTERACTIONS,)),
    ("recsys", "crm-recsys", (Topic.INTERACTIONS_RESOLVED, Topic.ITEM_UPDATED)),
    ("churn", "crm-churn", (Topic.INTERACTIONS_RESOLVED,)),
)
DEMO_SIZES = {"catalog": 1_682, "movielens": 100_943, "cdnow": 6_919}


@dataclass
class DemoLoad:
    """Load the demo into a running fleet, in the background: publish, wait until applied, fit."""

    fleet: Fleet
    rate: float
    stop: threading.Event
    progress: bool = True
    timeout_s: float = 1800.0
    poll_s: float = 1.0

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="demo-load", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        try:
            self.publish()
            if self.stop.is_set():
                return
            for service, group, topics in DEMO_CONSUMERS:
                if service in self.fleet.services:
                    self.wait_applied(service, group, topics)
            self.fit()
            log.info("demo_ready", detail="every demo customer's 360 is complete")
        except FleetInterrupted:
            pass
        except Exception:
            # The fleet keeps serving what it has; the log says what is missing.
            log.exception("demo_load_failed")

    def _settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap=self.fleet.bootstrap or "")

    def publish(self) -> None:
        """The catalog first, then MovieLens and CDNOW, each shifted to end now (shared.replay)."""
        now = utcnow()
        settings = self._settings()
        ensure_topics(settings, [Topic.INTERACTIONS, Topic.ITEM_UPDATED])
        publisher = EventPublisher(settings, client_id="crm-demo")
        log.info(
            "demo_publishing", now=now.isoformat(), detail="event times shifted so each data set ends now"
        )
        try:
            for name, events in (
                ("catalog", movielens_catalog_events(now=now)),
                ("movielens", movielens_events(now=now)),
                ("cdnow", cdnow_events(sample=True, now=now)),
            ):
                sent = replay(
                    events,
                    publisher,
                    rate=self.rate,
                    total=DEMO_SIZES[name],
                    progress=self.progress,
                    description=f"demo: {name}",
                    stop=self.stop,
                )
                log.info("demo_published", data_set=name, events=sent)
        finally:
            publisher.close()

    def wait_applied(self, service: str, group: str, topics: Iterable[str]) -> None:
        """Until ``group`` has committed every offset of ``topics`` (a consumer commits after the effect is
        durable, so committed means applied), with a progress bar of events applied."""
        servers = self._settings().servers()
        group_offsets = KafkaConsumer(
            bootstrap_servers=servers, group_id=group, enable_auto_commit=False, client_id="crm-demo-progress"
        )
        # Reads the log ends from fetch responses: the embedded broker (Tansu 0.6) answers ListOffsets
        # ("latest") with a count of record batches, not the next offset.
        ends_probe = KafkaConsumer(
            bootstrap_servers=servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            client_id="crm-demo-progress",
        )
        deadline = time.monotonic() + self.timeout_s
        bar = tqdm(desc=f"demo: {service} applying", unit="ev", disable=not self.progress)
        log.info("demo_waiting_for_consumer", service=service, group=group)
        try:
            while True:
                partitions = [
                    TopicPartition(topic, p)
                    for topic in topics
                    for p in group_offsets.partitions_for_topic(topic) or ()
                ]
                committed = {tp: group_offsets.committed(tp) or 0 for tp in partitions}
                ends = self._log_ends(ends_probe, committed) if partitions else {}
                done = sum(min(committed[tp], end) for tp, end in ends.items())
                total = sum(ends.values())
                bar.total, bar.n = total, done
                bar.refresh()
                if partitions and done >= total:
                    log.info("demo_applied", service=service, events=total)
                    return
                if time.monotonic() > deadline:
                    raise FleetError(
                        f"{service} applied {done} of {total} demo events in {self.timeout_s:.0f}s"
                    )
                if self.stop.wait(self.poll_s):
                    raise FleetInterrupted("stopped while loading the demo")
        finally:
            bar.close()
            ends_probe.close()
            group_offsets.close()

    @staticmethod
    def _log_ends(probe: KafkaConsumer, positions: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The next offset of each partition (its high watermark), from a fetch at ``positions``; never
        below what ListOffsets says (a real Kafka answers that right)."""
        listed = probe.end_offsets(list(positions))
        if set(probe.assignment()) != set(positions):
            probe.assign(list(positions))
        for tp, offset in positions.items():
            probe.seek(tp, offset)
        deadline = time.monotonic() + 10
        fetched = 0
        while fetched == 0 or any(probe.highwater(tp) is None for tp in positions):
            probe.poll(timeout_ms=200, max_records=1, update_offsets=False)
            fetched += 1
            if time.monotonic() > deadline:
                break
        return {tp: max(listed.get(tp) or 0, probe.highwater(tp) or 0) for tp in positions}

    def fit(self) -> None:
        """The profile's CLV and RFM clusters, and the recommender, on everything loaded."""
        headers = {API_KEY_HEADER: self.fleet.internal_key}
        with httpx.Client(timeout=30.0, headers=headers) as client:
            serving_before = None
            if "recsys" in self.fleet.services:
                serving_before = self._train_recsys(client, self.fleet.url_of("recsys"))
            if "profile" in self.fleet.services:
                self._fit_profile(client, self.fleet.url_of("profile"))
            if serving_before is not None:
                self._wait_recsys(client, self.fleet.url_of("recsys"), serving_before)

    def _fit_profile(self, client: httpx.Client, url: str) -> None:
        status = client.post(f"{url}/models/fit").raise_for_status().json()
        requested = status["requested"]  # the run that includes everything the profile has applied
        log.info("demo_models_fitting", service="profile", jobs=status["steps_total"])
        deadline = time.monotonic() + self.timeout_s
        with tqdm(total=status["steps_total"], desc="demo: profile CLV + RFM clusters", unit="job",
                  disable=not self.progress) as bar:  # fmt: skip
            while status["runs"] < requested:
                if time.monotonic() > deadline:
                    raise FleetError(f"the profile's fit did not finish in {self.timeout_s:.0f}s: {status}")
                if self.stop.wait(self.poll_s):
                    raise FleetInterrupted("stopped while fitting the demo models")
                status = client.get(f"{url}/models/fit").raise_for_status().json()
                bar.n = status["steps_done"]
                bar.set_postfix_str(status["step"] or "")
                bar.refresh()
            bar.n = status["steps_total"]
            bar.refresh()
        log.info(
            "demo_models_fitted",
            service="profile",
            **{
                job["job"]: job["version"] or ": ".join(filter(None, (job["outcome"], job["detail"])))
                for job in status["jobs"]
            },
        )

    def _train_recsys(self, client: httpx.Client, url: str) -> str:
        """Start a training run on everything loaded; one already going (the service's own trainer) may
        have read part of it, so wait for it and start another. Returns the version served before."""
        before = str(client.get(f"{url}/models").raise_for_status().json()["serving"])
        deadline = time.monotonic() + self.timeout_s
        while (response := client.post(f"{url}/models/train", json={})).status_code == 409:
            if time.monotonic() > deadline:
                raise FleetError(f"recsys was training for {self.timeout_s:.0f}s")
            if self.stop.wait(self.poll_s):
                raise FleetInterrupted("stopped while training the demo recommender")
        response.raise_for_status()
        log.info("demo_models_fitting", service="recsys")
        return before

    def _wait_recsys(self, client: httpx.Client, url: str, before: str) -> None:
        deadline = time.monotonic() + self.timeout_s

        def busy(models: dict[str, object]) -> bool:
            return bool(models["training"]) or (
                models["serving"] == before and not models["last_training_error"]
            )

        while busy(models := client.get(f"{url}/models").raise_for_status().json()):
            if time.monotonic() > deadline:
                raise FleetError(f"recsys training did not finish in {self.timeout_s:.0f}s")
            if self.stop.wait(self.poll_s):
                raise FleetInterrupted("stopped while training the demo recommender")
        log.info(
            "demo_models_fitted",
            service="recsys",
            serving=models["serving"],
            interactions=models["interactions"],
            error=models["last_training_error"],
        )


def install_stop_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM both mean: stop the fleet cleanly."""

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
