"""Waiting for results: GET /tasks/{id}?wait=S and POST /tasks?wait=S, woken by the
event feed, through a Redis restart, and across two API processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from app.config import Settings
from app.embedded import EmbeddedValkey
from tasks.tests.fixtures import (
    WorkerFactory,
    WorkerProcess,
    app_client,
    make_settings,
    wait_for,
    wait_status,
)


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/tasks", json={"message": "wait for me", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def timed_get(http: httpx.AsyncClient, task_id: str, wait_s: float) -> tuple[Any, float]:
    started = time.monotonic()
    response = await http.get(f"/tasks/{task_id}", params={"wait": wait_s}, timeout=wait_s + 30)
    assert response.status_code == 200, response.text
    return response.json(), time.monotonic() - started


def waiting(http: httpx.AsyncClient) -> int:
    """How many tasks have a waiter in the in-process API behind `http`."""
    transport: Any = http._transport
    return int(transport.app.state.waiters.waiting)


async def test_get_wait_answers_once_the_task_finishes(
    client: httpx.AsyncClient, start_worker: WorkerFactory
) -> None:
    await start_worker()
    task = await create(client, kind="record", payload={"seconds": 0.3})
    found, took_s = await timed_get(client, task["id"], 30)
    assert found["status"] == "completed"
    assert found["result"] == {"recorded": task["id"]}
    assert took_s < 30, "answered when the wait ran out, not when the task finished"


async def test_get_wait_answers_with_the_task_as_it_is_when_the_wait_runs_out(
    client: httpx.AsyncClient,
) -> None:
    task = await create(client)  # no worker: it stays pending
    found, took_s = await timed_get(client, task["id"], 0.5)
    assert found["status"] == "pending"
    assert took_s >= 0.5, "answered before the wait ran out"
    assert waiting(client) == 0


async def test_get_wait_on_a_finished_task_answers_at_once_and_bad_waits_are_refused(
    client: httpx.AsyncClient, start_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    await start_worker()
    task = await create(client)
    await wait_status(db, [task["id"]], "completed")
    found, took_s = await timed_get(client, task["id"], 60)
    assert found["status"] == "completed" and took_s < 60
    for wait in ("0", "-1", "61", "soon"):
        response = await client.get(f"/tasks/{task['id']}", params={"wait": wait})
        assert response.status_code == 422, (wait, response.text)
    unknown = "019a8f3c-5a7e-7c11-9d2e-6f1b2a3c4d5e"
    response = await client.get(f"/tasks/{unknown}", params={"wait": 1})
    assert response.status_code == 404 and response.json()["detail"]


async def test_post_wait_answers_201_when_finished_in_time_else_202(
    client: httpx.AsyncClient, start_worker: WorkerFactory
) -> None:
    await start_worker()
    done = await client.post("/tasks", params={"wait": 30}, json={"message": "quick"})
    assert done.status_code == 201, done.text
    assert done.json()["status"] == "completed"
    assert done.json()["result"] == {"message": "quick"}
    assert done.headers["Location"] == f"/tasks/{done.json()['id']}"

    slow = await client.post(
        "/tasks",
        params={"wait": 0.3},
        json={"message": "slow", "kind": "sleep", "payload": {"seconds": 30}},
    )
    assert slow.status_code == 202, slow.text
    assert slow.json()["status"] in ("pending", "processing")
    assert slow.headers["Location"] == f"/tasks/{slow.json()['id']}"
    refused = await client.post("/tasks", params={"wait": 0}, json={"message": "x"})
    assert refused.status_code == 422
    # Canceled, so the worker stops at once rather than wait out its shutdown timeout.
    canceled = await client.patch(slow.headers["Location"], json={"status": "canceled"})
    assert canceled.status_code in (200, 202), canceled.text


async def test_a_waiter_survives_a_redis_restart(
    database_url: str,
    namespace: str,
    db: asyncpg.Connection,
    valkey: EmbeddedValkey,
    start_worker: WorkerFactory,
) -> None:
    """The task finishes while Redis is down, so its event is lost: the feed's
    reconnect makes the waiter read its row again, long before its wait runs out."""
    settings = make_settings(database_url, valkey.url(), namespace)
    await start_worker(redis_url=valkey.url())
    async with app_client(settings) as http:
        task = await create(http, kind="record", payload={"seconds": 1.5})
        waiter = asyncio.create_task(timed_get(http, task["id"], 60))
        await wait_for(lambda: _true(waiting(http) == 1), what="the waiter to register")
        await wait_status(db, [task["id"]], "processing")
        await asyncio.to_thread(valkey.kill)
        await wait_status(db, [task["id"]], "completed")  # announced into the void
        await asyncio.to_thread(valkey.start)
        found, took_s = await waiter
    assert found["status"] == "completed"
    assert took_s < 60, "the waiter only learnt of the end at its deadline"


async def _true(value: bool) -> bool:
    return value


async def test_two_api_processes_both_hear_the_announcement(
    spawn_api: Callable[..., Awaitable[str]],
    spawn_worker: Callable[..., WorkerProcess],
    settings: Settings,
) -> None:
    first, second = await spawn_api(), await spawn_api()
    spawn_worker()
    async with (
        httpx.AsyncClient(base_url=first) as one,
        httpx.AsyncClient(base_url=second) as two,
    ):
        task = await create(one, kind="record", payload={"seconds": 1})
        (in_one, one_s), (in_two, two_s) = await asyncio.gather(
            timed_get(one, task["id"], 60), timed_get(two, task["id"], 60)
        )
        assert in_one["status"] == in_two["status"] == "completed"
        assert one_s < 60 and two_s < 60
        # The creating process waits just as well in the other one.
        made = await two.post("/tasks", params={"wait": 60}, json={"message": "via two"})
        assert made.status_code == 201 and made.json()["status"] == "completed"
