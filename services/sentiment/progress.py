"""A running fine-tune's progress, as a file the service reads: ``<data_dir>/training.json``.

``crm sentiment train`` (in the foreground or with ``--background``) rewrites it every few steps; the
service shows it at ``GET /sentiment/models`` so a background run's step, ETA and outcome are visible
where the served model is.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE = "training.json"


def progress_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILE


def write_progress(data_dir: str | Path, **fields: Any) -> None:
    """Replace the progress file atomically with ``fields`` plus the time and the writer's pid."""
    path = progress_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**fields, "updated_at": datetime.now(UTC).isoformat(timespec="seconds"), "pid": os.getpid()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    tmp.replace(path)


def read_progress(data_dir: str | Path) -> dict[str, Any] | None:
    """The last run's progress, or None when no fine-tune has run here. A run whose process is gone
    while the file still says ``running`` was stopped (it resumes from its checkpoint when run again)."""
    path = progress_path(data_dir)
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("state") == "running" and not _alive(int(record.get("pid", 0))):
        record["state"] = "stopped"
    return record


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
