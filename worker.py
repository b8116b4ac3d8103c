"""`python worker.py` runs one Taskline worker (see tasks/worker/), with the
schedule tick loop and the workflow progress of the features above tasks, and
the `http` kind with its client pool (gateway/kind.py)."""

from __future__ import annotations

from functools import partial

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


def main() -> None:
    run_worker(extensions)


if __name__ == "__main__":
    main()
