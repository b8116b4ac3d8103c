"""Scheduling as the worker sees it: priorities, named queues, kind rules,
aging, per-owner fairness and fleet-wide kind limits. Start order is read from
the `executions` table that the `record` handler writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from app.config import KindRule, Settings
from tasks.tests.fixtures import (
    WorkerFactory,
    WorkerProcess,
    app_client,
    wait_for,
    wait_log,
    wait_status,
)
from tasks.tests.test_worker import executions, max_overlap

Spawn = Callable[..., WorkerProcess]


async def post(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"message": "m", "kind": "record", **fields}
    response = await http.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def start_order(db: asyncpg.Connection) -> list[str]:
    return [str(row["task_id"]) for row in await executions(db)]


# Priorities, queues, rules ---------------------------------------------------------------


async def test_higher_priority_starts_first_and_equal_priority_in_arrival_order(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    by_priority = {p: [(await post(client, priority=p))["id"] for _ in range(3)] for p in (9, 5, 0)}
    default = (await post(client))["id"]  # no priority: 5, after the 5s sent before it

    await start_worker(worker_queue_maxsize=1)
    await wait_status(db, [*(i for ids in by_priority.values() for i in ids), default], "completed")

    assert await start_order(db) == [*by_priority[0], *by_priority[5], default, *by_priority[9]]


async def test_a_worker_serves_its_queues_in_the_order_given_and_no_other(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    routine = [(await post(client, priority=0))["id"] for _ in range(3)]
    urgent = [(await post(client, queue="urgent", priority=9))["id"] for _ in range(3)]
    batch = (await post(client, queue="batch", priority=0))["id"]

    await start_worker(worker_queue_maxsize=1, worker_queues="urgent,default")
    await wait_status(db, routine + urgent, "completed")
    assert await start_order(db) == urgent + routine
    assert (await client.get(f"/tasks/{batch}")).json()["status"] == "pending"

    await start_worker(worker_queues="batch")
    await wait_status(db, [batch], "completed")


async def test_kind_rules_give_defaults_that_the_request_may_override(
    settings: Settings,
) -> None:
    rules = {
        "r*": KindRule(priority=8),
        "record": KindRule(priority=2),  # the exact name wins over an earlier pattern
        "b*": KindRule(priority=1, queue="slow"),
        "e*": KindRule(),
    }
    async with app_client(settings.model_copy(update={"kind_rules": rules})) as http:
        exact = await post(http)
        pattern = await post(http, kind="boom")
        asked = await post(http, priority=7, queue="fast")
        unruled = await post(http, kind="echo")
    assert (exact["priority"], exact["queue"]) == (2, "default")
    assert (pattern["priority"], pattern["queue"]) == (1, "slow")
    assert (asked["priority"], asked["queue"]) == (7, "fast")
    assert (unruled["priority"], unruled["queue"]) == (5, "default")


async def test_bad_priority_or_queue_is_refused(client: httpx.AsyncClient) -> None:
    for fields in ({"priority": 10}, {"priority": -1}, {"queue": "no spaces"}, {"queue": ""}):
        response = await client.post("/tasks", json={"message": "m", **fields})
        assert response.status_code == 422, (fields, response.text)
        assert "detail" in response.json()


# Aging -------------------------------------------------------------------------------------


async def aging_run(
    settings: Settings, db: asyncpg.Connection, start_worker: WorkerFactory, aging_s: float
) -> tuple[list[str], str, list[str], list[str]]:
    """Priority-0 tasks, one priority-9 task, a pause of more than nine aging
    periods, more priority-0 tasks; then one worker slot runs them all."""
    aged = settings.model_copy(update={"priority_aging_s": aging_s})
    async with app_client(aged) as http:
        before = [(await post(http, priority=0))["id"] for _ in range(5)]
        low = (await post(http, priority=9))["id"]
        # The waiting is what is tested: 9 levels of 0.1 s each, and a margin.
        await asyncio.sleep(9 * 0.1 + 0.4)
        after = [(await post(http, priority=0))["id"] for _ in range(5)]
    await start_worker(worker_queue_maxsize=1, priority_aging_s=aging_s)
    await wait_status(db, [*before, low, *after], "completed")
    return before, low, after, await start_order(db)


async def test_with_aging_a_waiting_low_priority_task_overtakes_newer_high_priority_ones(
    settings: Settings, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    before, low, after, order = await aging_run(settings, db, start_worker, aging_s=0.1)
    assert order == [*before, low, *after]


async def test_without_aging_the_order_is_strict(
    settings: Settings, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    before, low, after, order = await aging_run(settings, db, start_worker, aging_s=0.0)
    assert order == [*before, *after, low]


# Fairness ----------------------------------------------------------------------------------


async def crowd_then_newcomer(
    settings: Settings, db: asyncpg.Connection, start_worker: WorkerFactory, fairness: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Owner A submits 200 short tasks while one worker slot runs them; once A's
    first few have started, owner B submits 5 while the slot is busy with an
    urgent task of owner C. Returns A's and B's tasks."""
    fair = settings.model_copy(update={"fairness": fairness})
    await start_worker(worker_queue_maxsize=1)
    async with app_client(fair) as http:
        crowd = []
        for start in range(0, 200, 20):
            crowd += await asyncio.gather(
                *(
                    post(http, owner="A", payload={"seconds": 0.01})
                    for _ in range(start, start + 20)
                )
            )

        async def a_few_started() -> bool:
            return len(await executions(db)) >= 8

        await wait_for(a_few_started, what="owner A's first tasks started")
        # B's five arrive while the one slot is busy with an urgent task, so
        # the worker chooses among all of them at once when it is free again.
        busy = await post(http, owner="C", priority=0, payload={"seconds": 0.5})

        async def slot_busy() -> bool:
            found = await db.fetchval(
                "SELECT count(*) FROM executions WHERE task_id = $1::uuid", busy["id"]
            )
            return bool(found)

        await wait_for(slot_busy, what="the urgent task running")
        newcomer = [await post(http, owner="B", payload={"seconds": 0.01}) for _ in range(5)]
    await wait_status(db, [task["id"] for task in [*crowd, busy, *newcomer]], "completed")
    return crowd, newcomer


async def a_tasks_started_while_b_waited(
    db: asyncpg.Connection, crowd: list[dict[str, Any]], newcomer: list[dict[str, Any]]
) -> int:
    """Owner A's tasks that started after B's first task was created and before
    B's last task started."""
    window = await db.fetchrow(
        "SELECT min(t.created_at) AS opened, max(e.started_at) AS closed"
        " FROM tasks t JOIN executions e ON e.task_id = t.id WHERE t.id = ANY($1::uuid[])",
        [uuid.UUID(task["id"]) for task in newcomer],
    )
    count = await db.fetchval(
        "SELECT count(*) FROM executions WHERE task_id = ANY($1::uuid[])"
        " AND started_at > $2 AND started_at < $3",
        [uuid.UUID(task["id"]) for task in crowd],
        window["opened"],
        window["closed"],
    )
    return int(count)


async def test_with_fairness_a_newcomer_goes_before_a_heavy_owners_backlog(
    settings: Settings, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    crowd, newcomer = await crowd_then_newcomer(settings, db, start_worker, "levels")
    assert [task["fair_level"] for task in newcomer] == [0, 1, 1, 1, 1]
    assert [task["fair_level"] for task in crowd[:7]] == [0, 1, 1, 1, 1, 1, 2]
    assert crowd[-1]["fair_level"] == 5
    assert await a_tasks_started_while_b_waited(db, crowd, newcomer) == 0


async def test_without_fairness_a_newcomer_waits_behind_the_backlog(
    settings: Settings, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    crowd, newcomer = await crowd_then_newcomer(settings, db, start_worker, "off")
    assert {task["fair_level"] for task in crowd + newcomer} == {0}
    assert await a_tasks_started_while_b_waited(db, crowd, newcomer) >= 100


async def test_fairness_levels_follow_weights_and_the_window_slides(settings: Settings) -> None:
    fair = settings.model_copy(
        # A window the 19 posts fit in on a busy machine (each owner's 8 must count).
        update={"fairness": "levels", "fairness_window_s": 3.0, "fairness_weights": {"big": 6}}
    )
    async with app_client(fair) as http:
        small = [(await post(http, owner="small"))["fair_level"] for _ in range(8)]
        big = [(await post(http, owner="big"))["fair_level"] for _ in range(8)]
        anonymous = [(await post(http))["fair_level"] for _ in range(3)]
        # The window is what is tested: past it, the heavy owner is new again.
        await asyncio.sleep(3.1)
        again = (await post(http, owner="small"))["fair_level"]
    assert small == [0, 1, 1, 1, 1, 1, 2, 2]
    assert big == [0, 0, 0, 0, 0, 0, 1, 1]  # weight 6: 6 recent count as 1
    assert anonymous == [0, 1, 1]  # tasks without an owner share one count
    assert again == 0


# Fleet-wide kind limits --------------------------------------------------------------------


async def test_a_kind_limit_holds_across_worker_processes(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    workers = [
        spawn_worker(WORKER_QUEUE_MAXSIZE="5", KIND_CONCURRENCY='{"record": 2}') for _ in range(3)
    ]
    for worker in workers:  # all of them up before there is work: each may take some
        await wait_log(worker, "started")
    limited = [(await post(client, payload={"seconds": 0.3}))["id"] for _ in range(12)]
    free = [(await post(client, kind="echo"))["id"] for _ in range(10)]
    await wait_status(db, limited + free, "completed", timeout_s=60)

    rows = await executions(db)
    assert sorted(str(row["task_id"]) for row in rows) == sorted(limited)  # each ran once
    assert max_overlap(rows) == 2, "the limit is 2 and 12 tasks were waiting"
    assert len({row["pid"] for row in rows}) >= 2, "one worker ran them all"
    assert all(worker.process.poll() is None for worker in workers)
