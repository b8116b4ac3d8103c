"""Groups with a fan-in: 50 tasks on 3 worker processes, and the race of the last
finishers, run 20 times on the fan-in statement itself with concurrent connections."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

import workflows.tests.handlers  # noqa: F401  (registers the test kinds)
from app.lifespan import Resources
from tasks import repository as task_repository
from tasks.tests.fixtures import WorkerProcess, wait_for
from workflows.progress import Progress

Spawn = Callable[..., WorkerProcess]
HANDLERS = "tasks.tests.handlers,workflows.tests.handlers"
SIZE = 50


def group_of(size: int) -> dict[str, Any]:
    members = [{"kind": "step", "message": f"m{n}", "payload": {"n": n}} for n in range(size)]
    return {"steps": [{"group": members}, {"kind": "collect", "message": "fan-in"}]}


async def test_a_group_of_50_on_3_workers_fans_in_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    workers = [spawn_worker(TASKLINE_HANDLERS=HANDLERS) for _ in range(3)]
    created = await client.post("/workflows", json=group_of(SIZE))
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]

    async def over() -> bool:
        for worker in workers:
            assert worker.process.poll() is None, worker.log()
        body = (await client.get(f"/workflows/{workflow_id}")).json()
        return bool(body["status"] != "running")

    await wait_for(over, timeout_s=40, what="the group and its fan-in")
    body = (await client.get(f"/workflows/{workflow_id}")).json()
    assert body["status"] == "completed", body
    callbacks = await db.fetch("SELECT id, result FROM tasks WHERE kind = 'collect'")
    assert len(callbacks) == 1, "the fan-in task was created more than once"
    result = await client.get(f"/tasks/{callbacks[0]['id']}")
    assert result.json()["result"] == {
        "results": [{"n": n, "parent": None} for n in range(SIZE)],
        "statuses": ["completed"] * SIZE,
    }, "the 50 results, in the group's order"
    assert await db.fetchval("SELECT count(DISTINCT task_id) FROM executions") == SIZE + 1


async def _finish_concurrently(resources: Resources, ids: list[uuid.UUID], lanes: int) -> None:
    """Count these (final) tasks into their step from `lanes` connections at once."""
    start = asyncio.Event()
    holding = 0  # lanes that hold their connection

    async def lane(chunk: list[uuid.UUID]) -> None:
        nonlocal holding
        async with task_repository.driver_connection(resources.engine) as conn:
            holding += 1
            await start.wait()
            async with conn.transaction():
                await Progress().advance(conn=conn, task_ids=chunk)

    async def all_holding() -> bool:
        for run in runs:  # a lane that failed to connect fails the test now
            if run.done():
                run.result()
        return holding == lanes

    runs = [asyncio.create_task(lane(ids[n::lanes])) for n in range(lanes)]
    await wait_for(all_holding, timeout_s=20, what="every lane holding its connection")
    start.set()
    await asyncio.gather(*runs)


async def test_the_last_finishers_race_creates_one_fan_in_20_times(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    for repetition in range(20):
        created = await client.post("/workflows", json=group_of(SIZE))
        workflow_id = uuid.UUID(created.json()["id"])
        ids = [
            row[0]
            for row in await db.fetch(
                "SELECT task_id FROM workflow_members WHERE workflow_id = $1 AND position = 1"
                " ORDER BY member",
                workflow_id,
            )
        ]
        await db.execute(
            "UPDATE tasks SET status = 'completed', result = jsonb_build_object('id', id)"
            " WHERE id = ANY($1::uuid[])",
            ids,
        )
        await _finish_concurrently(resources, ids, lanes=10)
        callbacks = await db.fetch(
            "SELECT inputs FROM tasks WHERE workflow_id = $1 AND kind = 'collect'", workflow_id
        )
        assert len(callbacks) == 1, f"repetition {repetition}: {len(callbacks)} fan-in tasks"
        step = await db.fetchrow(
            "SELECT remaining, status FROM workflow_steps WHERE workflow_id = $1 AND position = 1",
            workflow_id,
        )
        assert (step["remaining"], step["status"]) == (0, "done")
        members = json.loads(callbacks[0]["inputs"])["group_results"]
        assert [m["task_id"] for m in members] == [str(i) for i in ids], "in the group's order"
        assert [m["result"] for m in members] == [{"id": str(i)} for i in ids]
