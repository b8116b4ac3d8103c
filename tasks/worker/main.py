"""`python worker.py` / `taskline worker`: build the Worker from settings and run it."""

from __future__ import annotations

import asyncio
import sys

from app.config import load_settings
from app.logs import configure_logging
from tasks.handlers import load_handlers
from tasks.worker.worker import Worker, WorkerCrashed


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    worker = Worker(settings, load_handlers(settings.handler_modules))
    try:
        _run(worker.run(handle_signals=True))
    except WorkerCrashed:
        sys.exit(1)


def _run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]
