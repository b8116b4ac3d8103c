"""A handler for the hardening tests: it fails quoting its payload, as a careless
handler (or a validation error) does."""

from __future__ import annotations

from tasks.handlers import TaskContext, handler


@handler("leaky")
async def leaky(task: TaskContext) -> None:
    raise ValueError(f"cannot use {task.payload}")
