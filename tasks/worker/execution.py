"""Run one claimed task's handler and turn what happened into an Outcome."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from tasks.handlers import Handler, NoRetry, Registry, TaskContext
from tasks.models import TaskStatus
from tasks.repository import ClaimedTask, Outcome

log = logging.getLogger("taskline.worker")

MAX_ERROR_CHARS = 4000
NO_RETRY_S = -1.0  # an Outcome's retry_in_s that the database reads as "do not retry"


@dataclass(frozen=True)
class Policy:
    """Timeouts and retry backoff, from settings; a task may carry its own timeout."""

    default_timeout_s: float
    backoff_base_s: float
    backoff_cap_s: float
    result_max_bytes: int = 1024 * 1024

    def retry_in_s(self, attempt: int) -> float:
        """Exponential in the attempt number, capped, with jitter so retries spread out."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(attempt - 1, 30))
        return random.uniform(ceiling / 2, ceiling)

    def failed(self, task: ClaimedTask, error: str, *, retry: bool = True) -> Outcome:
        return Outcome(
            task.id,
            task.attempt,
            TaskStatus.FAILED,
            error=error[:MAX_ERROR_CHARS],
            retry_in_s=self.retry_in_s(task.attempt) if retry else NO_RETRY_S,
            kind=task.kind,
            queue=task.bell.queue,
        )


async def call_handler(handler: Handler, context: TaskContext, executor: Executor) -> Any:
    if handler.is_async:
        return await handler.func(context)
    loop = asyncio.get_running_loop()
    # In the runner's context, so the handler's own log lines carry the task too.
    run = contextvars.copy_context().run
    return await loop.run_in_executor(executor, run, handler.func, context)


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:MAX_ERROR_CHARS]


def encode_result(task: ClaimedTask, result: Any, policy: Policy) -> Outcome:
    try:
        # None, what most handlers return, without the encoder's call.
        result_json = (
            "null" if result is None else json.dumps(result, allow_nan=False, separators=(",", ":"))
        )
    except (TypeError, ValueError) as error:
        return policy.failed(task, f"result is not JSON: {error}")
    # ASCII-only JSON (json.dumps escapes the rest): as many bytes as characters.
    if len(result_json) > policy.result_max_bytes:
        return policy.failed(
            task,
            f"result is {len(result_json)} bytes of JSON, over RESULT_MAX_BYTES"
            f" ({policy.result_max_bytes})",
        )
    return Outcome(
        task.id, task.attempt, TaskStatus.COMPLETED, result_json=result_json,
        kind=task.kind, queue=task.bell.queue,
    )  # fmt: skip


def _context(task: ClaimedTask, services: Mapping[str, Any]) -> TaskContext:
    inputs = task.inputs or {}
    return TaskContext(
        task.id, task.kind, task.message, task.payload, task.attempt, task.workflow_id,
        inputs.get("parent_result"), inputs.get("group_results"), task.max_attempts, services,
    )  # fmt: skip


async def execute(
    task: ClaimedTask,
    registry: Registry,
    executor: Executor,
    policy: Policy,
    services: Mapping[str, Any] | None = None,
) -> Outcome:
    """Never raises but for cancellation: every other ending becomes an Outcome.

    A timeout cancels an async handler. A plain function in a thread cannot be
    stopped: its attempt is failed as timed out all the same, and the thread
    runs on until the function returns.
    """
    handler = registry.get(task.kind)
    if handler is None:
        return policy.failed(task, f"no handler for kind {task.kind!r}")
    context = _context(task, services or {})
    timeout_s = task.timeout_seconds or policy.default_timeout_s
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            result = await call_handler(handler, context, executor)
    except TimeoutError as error:
        if not deadline.expired():  # the handler's own TimeoutError
            return policy.failed(task, _error_text(error))
        log.info("timed out after %ss", timeout_s)
        return policy.failed(task, f"TimeoutError: timed out after {timeout_s:g}s")
    except NoRetry as error:
        log.info("task %s (%s) failed for good: %s", task.id, task.kind, _error_text(error))
        return policy.failed(task, _error_text(error), retry=False)
    except Exception as error:
        # The error's type only: its text may quote the payload (a validation error
        # does); it is kept on the task, for its owner to read.
        log.info("failed: %s", type(error).__name__)
        return policy.failed(task, _error_text(error))
    return encode_result(task, result, policy)
