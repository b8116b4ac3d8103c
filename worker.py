"""`python worker.py` runs one Taskline worker (see tasks/worker/), with the
workflow progress of the feature above tasks."""

from __future__ import annotations

from functools import partial

from tasks.handlers import Registry
from tasks.worker.hooks import Extensions
from tasks.worker.main import main as run_worker
from workflows.progress import Progress, sweep_loop


def extensions(registry: Registry) -> Extensions:
    progress = Progress()
    return Extensions(
        side_loops={
            "workflows": partial(sweep_loop, progress=progress),
        },
        flow_hook=progress,
    )


def main() -> None:
    run_worker(extensions)


if __name__ == "__main__":
    main()
