"""`python worker.py` runs one Taskline worker (see tasks/worker/), with the
schedule tick loop and the workflow progress of the features above tasks, and
the `http` kind with its client pool (gateway/kind.py); or, with
WORKER_PROCESSES above 1, a supervisor of that many (app/fleet.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from app.config import load_settings
from app.fleet import run_fleet
from app.logs import configure_logging
from gateway import kind as http_kind
from schedules.ticker import tick_loop
from tasks.handlers import Registry
from tasks.worker.hooks import Extensions
from tasks.worker.main import main as run_worker
from workflows.progress import Progress, sweep_loop


def extensions(registry: Registry) -> Extensions:
    progress = Progress()
    http_kind.register(registry)
    return Extensions(
        side_loops={
            "schedules": partial(tick_loop, registry=registry),
            "workflows": partial(sweep_loop, progress=progress),
        },
        flow_hook=progress,
        services={http_kind.SERVICE: http_kind.open_http},
    )


def main(processes: int | None = None, command: Sequence[str] = ()) -> None:
    """One worker in this process; or `processes` (default WORKER_PROCESSES), when
    above 1, each started as `command` (default: this script again)."""
    settings = load_settings()
    count = processes or settings.worker_processes
    if count == 1:
        run_worker(extensions)
        return
    configure_logging(settings.log_level, settings.log_format)
    command = command or [sys.executable, str(Path(__file__).resolve())]
    sys.exit(run_fleet(command, count, shutdown_timeout_s=settings.worker_shutdown_timeout_s))


if __name__ == "__main__":
    main()
