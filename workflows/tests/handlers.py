"""Handlers for the workflow tests. Each run writes a row in `executions` (see
tasks/tests/handlers.py), so order and duplicates are counted exactly."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.handlers import TaskContext, handler
from tasks.tests.handlers import _pool


class StepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 0
    fail_attempts: int = 0  # the first this many attempts fail


async def _record(task: TaskContext) -> None:
    pool = await _pool()
    await pool.execute(
        "INSERT INTO executions (task_id, attempt, pid) VALUES ($1, $2, $3)",
        task.id,
        task.attempt,
        os.getpid(),
    )


@handler("step", payload=StepPayload)
async def step(task: TaskContext) -> dict[str, Any]:
    """Fails its first `fail_attempts` attempts; hands on what it got and its n."""
    args = StepPayload.model_validate(task.payload)
    await _record(task)
    if task.attempt <= args.fail_attempts:
        raise RuntimeError(f"step {args.n} fails attempt {task.attempt}")
    return {"n": args.n, "parent": task.parent_result}


@handler("collect")
async def collect(task: TaskContext) -> dict[str, Any]:
    """A fan-in: the members' results and statuses, in order."""
    await _record(task)
    members = task.group_results or []
    return {
        "results": [member["result"] for member in members],
        "statuses": [member["status"] for member in members],
    }
