"""The tick loop: one task per tick whatever the concurrency, catch-up after a
gap with no worker, schedules declared in code."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import asyncpg
import httpx
import pytest

import tasks.handlers
from app.config import Settings
from app.lifespan import Resources
from conftest import run_full_worker
from schedules.ticker import declare_all, tick_key, tick_once
from tasks import events
from tasks.handlers import Registry, Schedule
from tasks.tests.fixtures import wait_for

GRACE_S = 1.5


async def every_second(client: httpx.AsyncClient, schedule_id: str, **fields: Any) -> None:
    body = {"id": schedule_id, "kind": "echo", "every_seconds": 1, **fields}
    response = await client.post("/schedules", json=body)
    assert response.status_code == 201, response.text


async def ticks(db: asyncpg.Connection, schedule_id: str) -> list[datetime]:
    """The tick of every task of a schedule, from its idempotency key, in order."""
    keys = await db.fetch(
        "SELECT idempotency_key AS key FROM tasks WHERE idempotency_key LIKE $1 ORDER BY 1",
        f"schedule {schedule_id} %",
    )
    return [datetime.fromisoformat(row["key"].split(" ")[2]) for row in keys]


async def run_until(
    settings: Settings, options: dict[str, Any], condition: Callable[[], Awaitable[bool]]
) -> None:
    """Run one worker until `condition` holds, then stop it and wait until it has."""
    worker, running = run_full_worker(settings, **options)
    try:
        await wait_for(condition, timeout_s=15, what="the schedules to tick")
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)


async def test_concurrent_rounds_create_one_task_per_tick(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await every_second(client, "race", catch_up="all")
    await db.execute("UPDATE schedules SET next_run_at = now() - interval '5 seconds'")
    await asyncio.gather(*(tick_once(resources) for _ in range(8)))
    found = await ticks(db, "race")
    assert 5 <= len(found) <= 7 and len(set(found)) == len(found)
    assert {b - a for a, b in pairwise(found)} == {timedelta(seconds=1)}
    row = await db.fetchrow("SELECT * FROM schedules")
    assert row["last_run_at"] == found[-1] and row["next_run_at"] > found[-1]
    assert row["last_task_id"] is not None


async def test_the_tasks_of_a_round_are_announced_as_created(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await every_second(client, "told", catch_up="all")
    await db.execute("UPDATE schedules SET next_run_at = now() - interval '2 seconds'")
    await tick_once(resources)
    made = {str(row["id"]) for row in await db.fetch("SELECT id FROM tasks")}
    announced = {
        str(event.task_id)
        for entry_id, fields in await resources.redis.xrange(resources.keys.events)
        for event in events.decode(entry_id, fields)
        if event.event == "created"
    }
    assert made and announced == made


async def test_a_tick_replayed_after_a_lost_round_gets_no_second_task(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    """Even if next_run_at had not moved on (the lock and the update lost), the
    unique key refuses a second task for the same tick."""
    await every_second(client, "replay", catch_up="all")
    await db.execute("UPDATE schedules SET next_run_at = now() - interval '3 seconds'")
    before = await db.fetchval("SELECT next_run_at FROM schedules")
    await tick_once(resources)
    first = await ticks(db, "replay")
    await db.execute("UPDATE schedules SET next_run_at = $1", before)
    await tick_once(resources)
    again = await ticks(db, "replay")
    assert len(again) == len(set(again)), "a tick got two tasks"
    assert set(first) <= set(again)


async def test_catch_up_modes_after_five_seconds_with_no_worker(
    client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings
) -> None:
    for mode in ("none", "latest", "all"):
        await every_second(client, mode, catch_up=mode)
    options = {"schedule_interval_s": 0.2, "schedule_misfire_grace_s": GRACE_S}

    async def each_ticked() -> bool:
        return all([await ticks(db, mode) for mode in ("none", "latest", "all")])

    await run_until(settings, options, each_ticked)
    last = {mode: (await ticks(db, mode))[-1] for mode in ("none", "latest", "all")}

    await asyncio.sleep(5)  # the gap: no worker runs
    restarted = await db.fetchval("SELECT now()")

    async def ticked_since() -> bool:
        return bool(
            await db.fetchval(
                "SELECT bool_and(last_run_at > $1::timestamptz + interval '2 seconds')"
                " FROM schedules",
                restarted,
            )
        )

    await run_until(settings, options, ticked_since)

    for mode in ("none", "latest", "all"):
        after = [tick for tick in await ticks(db, mode) if tick > last[mode]]
        first_round = await db.fetchval(
            "SELECT min(created_at) FROM tasks WHERE idempotency_key = ANY($1::text[])",
            [tick_key(mode, tick) for tick in after],
        )
        missed = []
        tick = last[mode] + timedelta(seconds=1)
        while tick < first_round - timedelta(seconds=GRACE_S):
            missed.append(tick)
            tick += timedelta(seconds=1)
        assert len(missed) >= 3, (mode, missed)
        on_time = [tick for tick in after if tick not in missed]
        assert on_time == [on_time[0] + timedelta(seconds=n) for n in range(len(on_time))]
        assert on_time[0] == missed[-1] + timedelta(seconds=1), (mode, missed, on_time)
        caught_up = [tick for tick in after if tick in missed]
        expected = {"none": [], "latest": missed[-1:], "all": missed}[mode]
        assert caught_up == expected, (mode, missed, caught_up)


async def test_declared_schedules_are_stored_once_and_keep_their_place(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks.handlers, "registry", Registry())

    @tasks.handlers.handler("nightly", schedule="0 3 * * *")
    async def nightly(task: tasks.handlers.TaskContext) -> None:
        return None

    module = types.ModuleType("declared_schedules")
    module.schedules = [  # type: ignore[attr-defined]
        Schedule("beat", kind="nightly", every_seconds=60, catch_up="none"),
        Schedule("taken", kind="nightly", cron="* * * * *"),
        Schedule("broken", kind="nightly", cron="not cron"),
    ]
    monkeypatch.setitem(__import__("sys").modules, "declared_schedules", module)
    registry = tasks.handlers.load_handlers(("declared_schedules",))
    assert [s.id for s in registry.schedules()] == ["beat", "broken", "nightly", "taken"]
    await every_second(client, "taken")

    now = await db.fetchval("SELECT now()")
    await declare_all(resources, registry, now)
    rows = {row["id"]: row for row in await db.fetch("SELECT * FROM schedules")}
    assert set(rows) == {"beat", "nightly", "taken"}, "the broken one is logged, not stored"
    assert rows["nightly"]["cron"] == "0 3 * * *" and rows["nightly"]["declared"]
    assert rows["beat"]["catch_up"] == "none"
    assert not rows["taken"]["declared"] and rows["taken"]["every_seconds"] == 1

    await db.execute("UPDATE schedules SET enabled = false WHERE id = 'beat'")
    await declare_all(resources, registry, now + timedelta(hours=5))  # a restart later
    again = {row["id"]: row for row in await db.fetch("SELECT * FROM schedules")}
    assert again["nightly"]["next_run_at"] == rows["nightly"]["next_run_at"]
    assert again["beat"]["enabled"] is False, "a PATCH of enabled survives restarts"
