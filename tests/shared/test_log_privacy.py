"""Logs hold no identifiers: uvicorn's access log, as the services run it, drops query strings."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from shared.broker import free_port
from shared.logging import configure_logging


def test_access_log_lines_drop_the_query_string(capfd: pytest.CaptureFixture[str]) -> None:
    app = FastAPI()

    @app.get("/customers/lookup")
    def lookup(type: str, value: str) -> dict[str, str]:
        return {"matched": type}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        configure_logging("INFO", json=True)  # as create_app does, after uvicorn configured its loggers
        response = httpx.get(
            f"http://127.0.0.1:{port}/customers/lookup", params={"type": "email", "value": "ada@example.com"}
        )
        assert response.status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    logged = capfd.readouterr()
    text = logged.out + logged.err
    assert "/customers/lookup?[redacted]" in text
    assert "ada" not in text
