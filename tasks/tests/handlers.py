"""Handlers for the tests. Each `record` run writes a row in `executions`, so
loss and duplication are counted exactly. The table lives in the test database
(made by the fixtures), found through TASKLINE_TEST_RECORD_DSN."""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import suppress
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from tasks.handlers import NoRetry, TaskContext, handler

# One pool per database and event loop, made by the first handler that asks:
# the others wait for the same one (made twice, one would never be closed).
_pools: dict[tuple[str, int], asyncio.Future[asyncpg.Pool]] = {}


async def _pool() -> asyncpg.Pool:
    dsn = os.environ["TASKLINE_TEST_RECORD_DSN"]
    key = (dsn, id(asyncio.get_running_loop()))
    made = _pools.get(key)
    if made is None or (made.done() and (made.cancelled() or made.exception() is not None)):
        # None yet, or the last try failed (the database was down): try again.
        made = _pools[key] = asyncio.ensure_future(asyncpg.create_pool(dsn, min_size=1, max_size=5))
    return await asyncio.shield(made)


class RecordPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(0, ge=0, le=60)
    fail: bool = False


@handler("record", payload=RecordPayload)
async def record(task: TaskContext) -> dict[str, Any]:
    args = RecordPayload.model_validate(task.payload)
    pool = await _pool()
    await pool.execute(
        "INSERT INTO executions (task_id, attempt, pid) VALUES ($1, $2, $3)",
        task.id,
        task.attempt,
        os.getpid(),
    )
    if args.seconds:
        await asyncio.sleep(args.seconds)
    if args.fail:
        raise RuntimeError("asked to fail")
    await pool.execute(
        "UPDATE executions SET finished_at = clock_timestamp() WHERE task_id = $1 AND attempt = $2",
        task.id,
        task.attempt,
    )
    return {"recorded": str(task.id)}


@handler("blocking")
def blocking(task: TaskContext) -> dict[str, Any]:
    """A plain function: runs in the worker's thread pool, never on the loop."""
    time.sleep(float(task.payload.get("seconds", 0.2)))
    return {"thread": True}


@handler("boom")
async def boom(task: TaskContext) -> None:
    raise ValueError(f"boom: {task.message}")


@handler("give_up")
async def give_up(task: TaskContext) -> None:
    raise NoRetry(f"no point retrying {task.message}")


@handler("context")
async def context(task: TaskContext) -> dict[str, Any]:
    """What the handler was given: attempts, and the worker's services (their `open`)."""
    if task.payload.get("fail_before_last") and not task.last_attempt:
        raise RuntimeError("not yet")
    return {
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "last_attempt": task.last_attempt,
        "services": {name: getattr(value, "open", None) for name, value in task.services.items()},
    }


@handler("not_json")
async def not_json(task: TaskContext) -> object:
    return {"when": object()}


async def close_pools() -> None:
    loop_id = id(asyncio.get_running_loop())
    for key in [key for key in _pools if key[1] == loop_id]:
        made = _pools.pop(key)
        with suppress(Exception):  # a pool that could not be made has nothing to close
            await (await made).close()
