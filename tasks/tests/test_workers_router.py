"""GET /workers: what each live worker reports, from a real worker on real stores."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

import httpx

from app.config import Settings
from app.lifespan import close_resources, open_resources
from auth.tests.conftest import Keys, bearer, keys_settings
from tasks.tests.fixtures import Stores, WorkerFactory, app_client, free_port, wait_for


async def workers(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await http.get("/workers")
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["workers"]
    return listed


async def test_no_worker_no_entry(client: httpx.AsyncClient) -> None:
    assert await workers(client) == []


async def test_a_running_worker_is_listed_with_its_slots_and_leaves_when_it_stops(
    client: httpx.AsyncClient, start_worker: WorkerFactory
) -> None:
    # A short lease: the heartbeat (lease / 3) reports every half second.
    worker = await start_worker(worker_lease_s=1.5, worker_queues="default,mail")
    task = (await client.post("/tasks", json={"kind": "sleep", "payload": {"seconds": 30},
                                              "message": "nap"})).json()  # fmt: skip

    async def busy() -> bool:
        return [w["slots_busy"] for w in await workers(client)] == [1]

    await wait_for(busy, what="the worker to report its busy slot")
    [listed] = await workers(client)
    assert listed["id"] == worker.worker_id
    assert (listed["host"], listed["pid"]) == (socket.gethostname(), os.getpid())
    assert (listed["queues"], listed["slots_total"]) == (["default", "mail"], 10)
    assert 0 <= listed["heartbeat_age_s"] < 1.5
    heartbeat_at = datetime.fromisoformat(listed["heartbeat_at"])
    started_at = datetime.fromisoformat(listed["started_at"])
    assert started_at <= heartbeat_at <= datetime.now(UTC)

    await client.patch(f"/tasks/{task['id']}", json={"status": "canceled"})
    worker.request_stop()

    async def gone() -> bool:
        return await workers(client) == []

    await wait_for(gone, timeout_s=15, what="the stopped worker to leave the list")


async def test_redis_down_answers_503_in_the_one_error_shape(settings: Settings) -> None:
    redis_down = f"redis://127.0.0.1:{free_port()}/0"
    async with app_client(settings.model_copy(update={"redis_url": redis_down})) as http:
        response = await http.get("/workers")
    assert response.status_code == 503, response.text
    assert "redis" in response.json()["detail"]
    assert response.headers["Retry-After"] == "1"


async def test_keys_need_queues_read_and_openapi_documents_every_answer(
    database_url: str, stores: Stores, namespace: str
) -> None:
    settings = keys_settings(database_url, stores, namespace)
    resources = open_resources(settings)
    try:
        keys = Keys(resources)
        tokens = [await keys.token("a", scope) for scope in ("queues:read", "admin", "tasks:read")]
    finally:
        await close_resources(resources)
    async with app_client(settings) as http:
        answers = [(await http.get("/workers", headers=bearer(t))).status_code for t in tokens]
        assert answers == [200, 200, 403]
        assert (await http.get("/workers")).status_code == 401
        operation = (await http.get("/openapi.json")).json()["paths"]["/workers"]["get"]
    assert {"200", "401", "403", "503"} <= set(operation["responses"])
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/WorkersOut"}
    assert {"bearer": ["queues:read"]} in operation["security"]
