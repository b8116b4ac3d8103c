"""Chains on real workers: results handed on, order kept, one task per step; a
failed step cancels the rest; tasks that end outside the recorder are swept."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

import workflows.tests.handlers  # noqa: F401  (registers the test kinds)
from app.lifespan import Resources
from tasks.tests.fixtures import WorkerFactory, wait_for
from workflows.progress import Progress, sweep_once


def step(n: int, **payload: Any) -> dict[str, Any]:
    return {"kind": "step", "message": f"step {n}", "payload": {"n": n, **payload}}


async def create(client: httpx.AsyncClient, steps: list[Any]) -> str:
    response = await client.post("/workflows", json={"steps": steps})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def finished(client: httpx.AsyncClient, workflow_id: str, timeout_s: float = 20) -> Any:
    async def over() -> bool:
        body = (await client.get(f"/workflows/{workflow_id}")).json()
        return bool(body["status"] != "running")

    await wait_for(over, timeout_s=timeout_s, what=f"workflow {workflow_id} to end")
    return (await client.get(f"/workflows/{workflow_id}")).json()


async def test_a_chain_of_three_with_a_step_failing_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker()
    workflow_id = await create(client, [step(1), step(2, fail_attempts=1), step(3)])
    body = await finished(client, workflow_id)
    assert body["status"] == "completed", body

    task_ids = [s["tasks"][0]["task_id"] for s in body["steps"]]
    rows = await db.fetch(
        "SELECT id, result FROM tasks WHERE workflow_id = $1", uuid.UUID(workflow_id)
    )
    assert sorted(str(row["id"]) for row in rows) == sorted(task_ids), "one task per step"
    last = await client.get(f"/tasks/{task_ids[2]}")
    assert last.json()["result"] == {
        "n": 3,
        "parent": {"n": 2, "parent": {"n": 1, "parent": None}},
    }, "each step got the result of the one before"
    runs = await db.fetch("SELECT task_id, attempt FROM executions ORDER BY started_at")
    assert [(str(r["task_id"]), r["attempt"]) for r in runs] == [
        (task_ids[0], 1),
        (task_ids[1], 1),
        (task_ids[1], 2),
        (task_ids[2], 1),
    ], "in order, step 2 twice (failed once), and nothing else"


async def test_a_step_failing_for_good_cancels_the_rest(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker()
    doomed = {**step(2, fail_attempts=100), "max_attempts": 2}
    workflow_id = await create(client, [step(1), doomed, step(3), {"group": [step(4)]}])
    body = await finished(client, workflow_id)
    assert body["status"] == "failed"
    assert body["error"].startswith("step 2 failed: RuntimeError"), body["error"]
    statuses = [(s["status"], s["tasks"][0]["status"]) for s in body["steps"]]
    assert statuses == [("done", "completed"), ("done", "failed"),
                        ("canceled", "canceled"), ("canceled", "canceled")]  # fmt: skip
    assert body["steps"][2]["error"] == "canceled: step 2 failed"
    assert body["steps"][2]["tasks"][0]["task_id"] is None, "no task for a canceled step"
    assert await db.fetchval("SELECT count(*) FROM tasks") == 2


async def test_canceling_a_chain_while_a_step_runs(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker()
    nap = {"kind": "sleep", "message": "nap", "payload": {"seconds": 30}}
    workflow_id = await create(client, [nap, step(2)])

    async def running() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'processing'"))

    await wait_for(running, what="the first step to run")
    canceled = await client.patch(f"/workflows/{workflow_id}", json={"status": "canceled"})
    assert canceled.status_code == 200
    answered = canceled.json()
    assert answered["status"] == "canceled"
    # The step not started is canceled at once; the running one is asked to stop,
    # and its worker may already have stopped it by the time the answer is built.
    assert answered["steps"][1]["status"] == "canceled"
    assert answered["steps"][0]["status"] in ("running", "done")

    async def stopped() -> bool:
        body = (await client.get(f"/workflows/{workflow_id}")).json()
        return bool(body["steps"][0]["status"] == "done")

    await wait_for(stopped, what="the running step to end")
    body = (await client.get(f"/workflows/{workflow_id}")).json()
    assert body["status"] == "canceled" and body["steps"][1]["tasks"][0]["task_id"] is None
    assert body["steps"][0]["tasks"][0]["status"] == "canceled", "its handler was stopped"
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1


async def test_a_step_canceled_over_the_tasks_api_is_swept(
    client: httpx.AsyncClient, start_full_worker: WorkerFactory
) -> None:
    workflow_id = await create(client, [step(1), step(2)])
    first = (await client.get(f"/workflows/{workflow_id}")).json()["steps"][0]["tasks"][0]
    patched = await client.patch(f"/tasks/{first['task_id']}", json={"status": "canceled"})
    assert patched.status_code == 200
    await start_full_worker()  # its sweep sees the canceled step
    body = await finished(client, workflow_id)
    assert body["status"] == "failed" and body["error"].startswith("step 1 canceled")
    assert body["steps"][1]["status"] == "canceled"


async def test_the_sweep_moves_on_a_step_finished_without_the_hook(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    start_worker: WorkerFactory,
) -> None:
    """A worker built without the flow hook records the outcome alone; the sweep
    then creates the next step, once, however often it runs."""
    await start_worker()
    # Step 2 waits on a queue no worker serves yet, so no run of it can end
    # between the sweeps and be counted by the third.
    workflow_id = await create(client, [step(1), {**step(2), "queue": "later"}])

    async def first_done() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'completed'"))

    await wait_for(first_done, what="step 1 completed")
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1
    counted = [await sweep_once(resources, Progress()) for _ in range(3)]
    assert counted == [1, 0, 0]
    assert await db.fetchval("SELECT count(*) FROM tasks") == 2, "step 2 created once"
    await start_worker(worker_queues="later")

    async def both_done() -> bool:
        return await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'completed'") == 2

    await wait_for(both_done, what="step 2 completed")
    assert await sweep_once(resources, Progress()) == 1
    body = (await client.get(f"/workflows/{workflow_id}")).json()
    assert body["status"] == "completed"
    assert await db.fetchval("SELECT count(*) FROM tasks") == 2
