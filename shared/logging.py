"""structlog configuration: JSON outside dev, console in dev, request/event ids bound via contextvars."""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_HANDLER_NAME = "crm"


class _WithoutQueryString(logging.Filter):
    """Drops the query string from uvicorn's access-log lines: lookups carry identifiers there
    (``/customers/lookup?type=email&value=...``), and logs must hold no PII."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's format: '%s - "%s %s HTTP/%s" %d' with (client, method, path+query, version, status).
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?[redacted]", args[3], args[4])
        return True


# Log fields that name a person. Logs outlive an erasure (they are shipped and rotated elsewhere), so
# these are written as a pseudonym: the same customer always gets the same one (to follow a customer
# through the logs, compute ``log_pseudonym(id)``), and the id itself never reaches a log line.
PERSONAL_FIELDS = frozenset(
    {"customer_id", "customer_ids", "survivor_id", "merged_id", "email", "phone", "anonymous_id"}
)


def log_pseudonym(value: object) -> str:
    """``cus~`` and 12 hex digits of the BLAKE2b hash of an identifier."""
    return "cus~" + hashlib.blake2b(str(value).encode(), digest_size=6).hexdigest()


def _pseudonymise(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in PERSONAL_FIELDS & event.keys():
        value = event[key]
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            event[key] = [log_pseudonym(v) for v in value]
        else:
            event[key] = log_pseudonym(value)
    return event


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route stdlib and structlog logs through one renderer."""
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        _pseudonymise,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler: others (pytest's capture, an embedding app's) stay.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level.upper())
    # kafka-python is chatty at INFO (every rebalance step); keep its warnings only.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # kafka-python 3's selector warns whenever a task runs > 100 ms, which a busy 2-core host does often.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    # httpx logs every request at INFO (the fleet runner polls /readyz twice a second).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _WithoutQueryString) for f in access.filters):
        access.addFilter(_WithoutQueryString())


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
