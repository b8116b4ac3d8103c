"""Run one claimed task's handler and turn what happened into an Outcome."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import Executor
from typing import Any

from tasks.handlers import Handler, Registry, TaskContext
from tasks.models import TaskStatus
from tasks.repository import ClaimedTask, Outcome

log = logging.getLogger("taskline.worker")

MAX_RESULT_BYTES = 1024 * 1024
MAX_ERROR_CHARS = 4000


async def call_handler(handler: Handler, context: TaskContext, executor: Executor) -> Any:
    if handler.is_async:
        return await handler.func(context)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, handler.func, context)


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:MAX_ERROR_CHARS]


def encode_result(task: ClaimedTask, result: Any) -> Outcome:
    try:
        result_json = json.dumps(result, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        return Outcome(
            task.id, task.attempt, TaskStatus.FAILED, error=f"result is not JSON: {error}"
        )
    if len(result_json) > MAX_RESULT_BYTES:
        return Outcome(
            task.id,
            task.attempt,
            TaskStatus.FAILED,
            error=f"result is over {MAX_RESULT_BYTES} bytes of JSON",
        )
    return Outcome(task.id, task.attempt, TaskStatus.COMPLETED, result_json=result_json)


async def execute(task: ClaimedTask, registry: Registry, executor: Executor) -> Outcome:
    """Never raises but for cancellation: every other ending becomes an Outcome."""
    handler = registry.get(task.kind)
    if handler is None:
        return Outcome(
            task.id, task.attempt, TaskStatus.FAILED, error=f"no handler for kind {task.kind!r}"
        )
    context = TaskContext(task.id, task.kind, task.message, task.payload, task.attempt)
    try:
        result = await call_handler(handler, context, executor)
    except Exception as error:
        log.info("task %s (%s) failed: %s", task.id, task.kind, _error_text(error))
        return Outcome(task.id, task.attempt, TaskStatus.FAILED, error=_error_text(error))
    return encode_result(task, result)
