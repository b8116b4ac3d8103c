"""What a worker gives its handlers beyond the task: attempts left, services
opened once per worker (tasks/worker/hooks.py), and NoRetry to fail for good."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from app.config import Settings
from app.lifespan import Resources
from tasks.handlers import load_handlers
from tasks.tests.fixtures import WorkerFactory, wait_status
from tasks.worker import Worker
from tasks.worker.hooks import Extensions


async def create(client: httpx.AsyncClient, kind: str, **fields: Any) -> str:
    body = {"message": "m", "kind": kind, **fields}
    response = await client.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_no_retry_fails_the_task_at_once_whatever_attempts_remain(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = await create(client, "give_up", max_attempts=5)
    await start_worker()
    await wait_status(db, [task_id], "failed")
    row = await db.fetchrow(
        "SELECT attempts, error, errors FROM tasks WHERE id = $1::uuid", task_id
    )
    assert row["attempts"] == 1
    assert row["error"] == "NoRetry: no point retrying m"


async def test_a_handler_knows_whether_this_is_its_last_attempt(
    client: httpx.AsyncClient, start_worker: WorkerFactory
) -> None:
    await start_worker()
    task_id = await create(client, "context", max_attempts=3, payload={"fail_before_last": True})
    done = (await client.get(f"/tasks/{task_id}", params={"wait": 30})).json()
    assert done["status"] == "completed", done
    assert done["result"]["attempt"] == 3 and done["result"]["max_attempts"] == 3
    assert done["result"]["last_attempt"] is True


class Probe:
    def __init__(self) -> None:
        self.open = False
        self.opened_with: Resources | None = None


async def test_services_are_open_for_every_handler_and_closed_after_the_last(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    probe = Probe()
    opened: list[str] = []

    @asynccontextmanager
    async def open_probe(resources: Resources) -> AsyncIterator[Probe]:
        probe.open, probe.opened_with = True, resources
        opened.append("open")
        try:
            yield probe
        finally:
            probe.open = False
            opened.append("closed")

    registry = load_handlers(settings.handler_modules)
    worker = Worker(settings, registry, extensions=Extensions(services={"probe": open_probe}))
    running = asyncio.create_task(worker.run())
    try:
        ids = [await create(client, "context") for _ in range(3)]
        for task_id in ids:
            done = (await client.get(f"/tasks/{task_id}", params={"wait": 30})).json()
            assert done["result"]["services"] == {"probe": True}, done
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 30)
    assert opened == ["open", "closed"]  # once for the worker, not per task
    assert probe.opened_with is worker.resources and probe.open is False
