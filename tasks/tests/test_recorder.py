"""The worker's recorder (tasks/worker/recorder.py) against a real PostgreSQL:
a write that PostgreSQL aborts as a deadlock is written again, and the
recorder goes on; under load outcomes share a write, which a drain does not
wait for."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg

from app.ids import uuid7
from app.lifespan import Resources
from tasks import events
from tasks.models import TaskStatus
from tasks.repository import Outcome
from tasks.tests.fixtures import wait_for
from tasks.worker.recorder import Recorder

WORKER = "test-worker"


async def processing(db: asyncpg.Connection, count: int) -> list[uuid.UUID]:
    """Tasks claimed by WORKER, in the order they were stored (and their ids sort)."""
    ids = []
    for _ in range(count):  # one by one: stored (and scanned) in id order
        ids.append(
            await db.fetchval(
                "INSERT INTO tasks (id, kind, message, status, attempts, worker_id,"
                " lease_expires_at) VALUES ($1, 'echo', 'x', 'processing', 1, $2,"
                " now() + interval '1 minute') RETURNING id",
                uuid7(),
                WORKER,
            )
        )
    return ids


async def waits_for_a_lock(db: asyncpg.Connection, timeout_s: float = 10.0) -> None:
    """Until another session of this database waits for a row lock."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        await db.execute("SELECT pg_stat_clear_snapshot()")  # else one per transaction
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the recorder's statement never waited for the lock")


async def test_a_write_aborted_as_a_deadlock_is_written_again(
    db: asyncpg.Connection, resources: Resources
) -> None:
    first, second = await processing(db, 2)
    recorder = Recorder(resources, WORKER, max_pending=10, publisher=events.Publisher(resources))
    runner = asyncio.create_task(recorder.run(), name="recorder")
    try:
        async with db.transaction():
            # This session waits longer before it looks for a deadlock than the
            # recorder's does: the recorder's statement is the one PostgreSQL aborts.
            await db.execute("SET LOCAL deadlock_timeout = '30s'")
            await db.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", second)
            for task_id in (first, second):
                await recorder.put(Outcome(task_id, 1, TaskStatus.COMPLETED, result_json="1"))
            await waits_for_a_lock(db)  # the recorder holds `first`, waits for `second`
            await db.execute("UPDATE tasks SET updated_at = now() WHERE id = $1", first)
        drained = asyncio.create_task(recorder.drain(timeout_s=15))
        await asyncio.wait([drained, runner], return_when=asyncio.FIRST_COMPLETED)
        assert not runner.done(), f"the recorder stopped: {runner.exception()!r}"
        assert await drained, "the outcomes were never written"
        statuses = await db.fetch("SELECT status FROM tasks WHERE id = ANY($1)", [first, second])
        assert [row["status"] for row in statuses] == ["completed", "completed"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await recorder.close()


class Announced(events.Publisher):
    """The worker's publisher, keeping the task ids of each batch it was given."""

    def __init__(self, resources: Resources) -> None:
        super().__init__(resources)
        self.batches: list[list[uuid.UUID]] = []

    def publish(self, batch: Sequence[events.Event]) -> None:
        self.batches.append([event.task_id for event in batch])
        super().publish(batch)


async def test_outcomes_after_a_write_share_the_next_one_and_a_drain_does_not_wait(
    db: asyncpg.Connection, resources: Resources
) -> None:
    """A lone outcome is written at once. Outcomes handed in right after a write
    wait for more to join them (here for a minute, so nothing but the drain can
    end the wait); a drain writes them at once, in one statement."""
    first, second, third = await processing(db, 3)
    announced = Announced(resources)
    recorder = Recorder(resources, WORKER, max_pending=10, publisher=announced, linger_s=60.0)
    runner = asyncio.create_task(recorder.run(), name="recorder")

    async def first_written() -> bool:
        return announced.batches == [[first]]

    try:
        await recorder.put(Outcome(first, 1, TaskStatus.COMPLETED, result_json="1"))
        await wait_for(first_written, what="the lone outcome's write")
        for task_id in (second, third):
            await recorder.put(Outcome(task_id, 1, TaskStatus.COMPLETED, result_json="1"))
        assert await recorder.drain(timeout_s=15), "the drain waited out the linger"
        assert announced.batches == [[first], [second, third]]
        written = [first, second, third]
        statuses = await db.fetch("SELECT status FROM tasks WHERE id = ANY($1)", written)
        assert [row["status"] for row in statuses] == ["completed"] * 3
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await recorder.close()
