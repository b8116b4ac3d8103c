"""Two real worker processes tick a 1-second schedule for about 10 s, and one of
them is SIGKILLed on the way: still exactly one task per tick, none missed."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import httpx

from tasks.tests.fixtures import WorkerProcess, wait_for

Spawn = Callable[..., WorkerProcess]
FLEET_ENV = {
    "SCHEDULE_INTERVAL_SECONDS": "0.2",
    "WORKER_LEASE_SECONDS": "2",
    "TASKLINE_HANDLERS": "tasks.tests.handlers",
}


async def tick_counts(db: asyncpg.Connection) -> Counter[datetime]:
    """Tasks per tick, the tick read from each task's key (schedule id + tick)."""
    rows = await db.fetch(
        "SELECT idempotency_key FROM tasks WHERE idempotency_key LIKE 'schedule %'"
    )
    return Counter(datetime.fromisoformat(row[0].split(" ")[2]) for row in rows)


async def test_two_workers_and_a_sigkill_still_one_task_per_tick(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    first, second = spawn_worker(**FLEET_ENV), spawn_worker(**FLEET_ENV)
    body = {"id": "beat", "kind": "record", "every_seconds": 1, "catch_up": "all"}
    assert (await client.post("/schedules", json=body)).status_code == 201

    def ticked(count: int) -> Callable[[], Awaitable[bool]]:
        async def enough() -> bool:
            assert first.process.poll() is None or first.process.returncode == -9, first.log()
            return len(await tick_counts(db)) >= count

        return enough

    await wait_for(ticked(4), timeout_s=20, what="4 ticks with two workers")
    first.signal(signal.SIGKILL)
    await wait_for(ticked(10), timeout_s=20, what="10 ticks after the SIGKILL")
    assert (await client.patch("/schedules/beat", json={"enabled": False})).status_code == 200

    async def all_done() -> bool:
        left = await db.fetchval("SELECT count(*) FROM tasks WHERE status <> 'completed'")
        return bool(left == 0)

    await wait_for(all_done, timeout_s=30, what="every tick's task completed")
    counts = await tick_counts(db)
    assert [tick for tick, n in counts.items() if n != 1] == [], "a tick got more than one task"
    found = sorted(counts)
    expected = [found[0] + timedelta(seconds=n) for n in range(len(found))]
    assert found == expected, "a tick was missed"
    assert second.process.poll() is None, second.log()
