"""`python worker.py` / `taskline worker`: build the Worker from settings and run it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from app.config import load_settings
from app.logs import configure_logging
from tasks.handlers import Registry, load_handlers
from tasks.worker.hooks import Extensions
from tasks.worker.worker import Worker, WorkerCrashed


def main(extensions: Callable[[Registry], Extensions] | None = None) -> None:
    """Run one worker; `extensions` adds what features above tasks bring (worker.py)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    registry = load_handlers(settings.handler_modules)
    added = extensions(registry) if extensions is not None else None
    worker = Worker(settings, registry, extensions=added)
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
