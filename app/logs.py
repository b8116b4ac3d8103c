"""One log format for every Taskline process: human lines (LOG_FORMAT=text, the
default) or one JSON object per line (LOG_FORMAT=json).

A line about a task carries task_id, kind, queue, attempt and worker_id. The
worker binds the task it runs to its context (`bind_task`) and its own id
once (`bind_worker`); a filter on the handler reads them only for lines that
are written, so a line the level filters out costs nothing more. A line
logged outside a task's context passes the fields as `extra`. Payloads and
results are never logged.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Protocol

TASK_FIELDS = ("task_id", "kind", "queue", "attempt", "worker_id")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class LogSubject(Protocol):
    """What a task gives its log lines; asked only when a line is written."""

    def log_fields(self) -> dict[str, Any]: ...


_subject: ContextVar[LogSubject | None] = ContextVar("taskline_log_subject", default=None)
_worker_id: ContextVar[str | None] = ContextVar("taskline_worker_id", default=None)


def bind_task(subject: LogSubject) -> Token[LogSubject | None]:
    """Lines logged from here on in this context (a task's runner) are about `subject`."""
    return _subject.set(subject)


def bind_worker(worker_id: str) -> None:
    """Lines of this context and of the tasks it starts carry this worker's id."""
    _worker_id.set(worker_id)


class TaskContextFilter(logging.Filter):
    """Adds the bound task's and worker's fields to a record being written;
    fields given as `extra` win."""

    def filter(self, record: logging.LogRecord) -> bool:
        subject = _subject.get()
        if subject is not None:
            for key, value in subject.log_fields().items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        worker_id = _worker_id.get()
        if worker_id is not None and not hasattr(record, "worker_id"):
            record.worker_id = worker_id
        return True


def _task_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key in TASK_FIELDS if (value := getattr(record, key, None)) is not None}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [task_id=... kind=... ...]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _task_fields(record)
        if not fields:
            return line
        first, newline, rest = line.partition("\n")  # a traceback stays below
        tags = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{first} [{tags}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the task
    fields present, an access line's parts, and a traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_task_fields(record),
        }
        if record.name == "uvicorn.access":
            entry.update(_access_fields(record))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn logs a request as (client, method, path, http version, status)."""
    args = record.args
    if not isinstance(args, tuple) or len(args) != 5:
        return {}
    client, method, path, _http_version, status = args
    return {"client": client, "method": method, "path": path, "status": status}


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(TaskContextFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # SQL echo stays off whatever the level: it would cost more than the work.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # uvicorn's loggers write through this handler, in this format; one that
    # uvicorn switched off (no handler, not propagating: ACCESS_LOG=false) stays off.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
