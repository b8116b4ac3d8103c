"""The no-op kind Taskline runs in the peers comparison
(TASKLINE_HANDLERS=taskline_handlers, with bench/peers on the import path)."""

from __future__ import annotations

import probe

from tasks.handlers import TaskContext, handler


@handler("noop")
async def noop(task: TaskContext) -> None:
    probe.record(task.message)
