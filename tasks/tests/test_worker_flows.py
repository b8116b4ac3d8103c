"""The recorder's workflow path (tasks/worker/flows.py): a batch with workflow
steps is recorded in one transaction with the hook's move; a batch without
them never calls the hook."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from app.lifespan import Resources
from tasks import repository
from tasks.doorbell import Bell, Doorbell
from tasks.models import TaskStatus
from tasks.repository import Outcome
from tasks.worker.flows import FlowRecorder

WORKER = "test-worker"


class Hook:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[list[uuid.UUID]] = []

    async def advance(self, *, conn: Any, task_ids: list[uuid.UUID]) -> list[Bell]:
        self.calls.append(task_ids)
        if self.fail:
            raise RuntimeError("the workflow could not move on")
        return []


async def processing(db: asyncpg.Connection, count: int) -> list[uuid.UUID]:
    rows = await db.fetch(
        "INSERT INTO tasks (id, kind, message, status, attempts, worker_id)"
        " SELECT gen_random_uuid(), 'echo', 'x', 'processing', 1, $1 FROM generate_series(1, $2)"
        " RETURNING id",
        WORKER,
        count,
    )
    return [row[0] for row in rows]


def done(task_id: uuid.UUID, *, in_flow: bool) -> Outcome:
    return Outcome(task_id, 1, TaskStatus.COMPLETED, result_json="1", in_flow=in_flow)


async def test_plain_batches_never_call_the_hook(
    db: asyncpg.Connection, resources: Resources
) -> None:
    hook = Hook(fail=True)
    ids = await processing(db, 2)
    recorder = FlowRecorder(Doorbell(resources), WORKER, hook)
    async with repository.driver_connection(resources.engine) as conn:
        recorded = await recorder.finish(conn, [done(i, in_flow=False) for i in ids])
    assert len(recorded) == 2 and hook.calls == []


async def test_the_hook_sees_only_final_workflow_steps(
    db: asyncpg.Connection, resources: Resources
) -> None:
    hook = Hook()
    plain, step, retried = await processing(db, 3)
    await db.execute("UPDATE tasks SET max_attempts = 3")
    again = Outcome(retried, 1, TaskStatus.FAILED, error="boom", in_flow=True)
    recorder = FlowRecorder(Doorbell(resources), WORKER, hook)
    async with repository.driver_connection(resources.engine) as conn:
        await recorder.finish(conn, [done(plain, in_flow=False), done(step, in_flow=True), again])
    assert hook.calls == [[step]], "a retry is not final; a plain task is not a step"


async def test_a_failing_hook_rolls_the_outcomes_back(
    db: asyncpg.Connection, resources: Resources
) -> None:
    ids = await processing(db, 2)
    recorder = FlowRecorder(Doorbell(resources), WORKER, Hook(fail=True))
    async with repository.driver_connection(resources.engine) as conn:
        with pytest.raises(RuntimeError):
            await recorder.finish(conn, [done(ids[0], in_flow=False), done(ids[1], in_flow=True)])
    statuses = await db.fetch("SELECT status FROM tasks")
    assert {row[0] for row in statuses} == {"processing"}, "outcome and move commit together"
