"""A store that is down: every route answers 503 with Retry-After, never a 500."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from app.config import Settings
from app.lifespan import Resources
from tasks.tests.fixtures import Stores, app_client, free_port, make_settings
from tasks.worker import maintenance
from topics.tests.conftest import create_queue, lease, put, wait_for

HANDLE = {"receipt_handle": "AQ"}
REQUESTS: list[tuple[str, str, dict | None]] = [
    ("POST", "/topics", {"id": "t"}),
    ("GET", "/topics", None),
    ("GET", "/topics/t", None),
    ("DELETE", "/topics/t", None),
    ("POST", "/topics/t/messages", {"data": 1}),
    ("POST", "/queues", {"id": "q"}),
    ("GET", "/queues/q", None),
    ("PATCH", "/queues/q", {"ack_deadline_seconds": 5}),
    ("DELETE", "/queues/q", None),
    ("GET", "/queues/q/stats", None),
    ("POST", "/queues/q/messages", {"data": 1}),
    ("POST", "/queues/q/lease", {}),
    ("POST", "/queues/q/redrive", None),
    ("POST", f"/messages/{uuid.uuid4()}/ack", HANDLE),
    ("POST", f"/messages/{uuid.uuid4()}/nack", HANDLE),
    ("POST", f"/messages/{uuid.uuid4()}/extend", {**HANDLE, "visibility_seconds": 5}),
]


def assert_unavailable(response: httpx.Response, store: str) -> None:
    assert response.status_code == 503, response.text
    assert store in response.json()["detail"] and response.headers["retry-after"]


async def test_postgres_down_answers_503_everywhere(namespace: str, stores: Stores) -> None:
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    async with app_client(make_settings(down, stores.redis_url, namespace)) as http:
        for method, path, body in REQUESTS:
            response = await http.request(method, path, json=body)
            assert_unavailable(response, "postgres")


async def test_redis_down_leases_answer_503_and_nothing_is_lost(
    settings: Settings, db: asyncpg.Connection, resources: Resources
) -> None:
    async with app_client(settings) as http:
        await create_queue(http, "q")
    redis_down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with app_client(redis_down) as http:
        assert_unavailable(await http.post("/queues/q/lease", json={}), "redis")
        assert_unavailable(await http.post("/queues/q/lease", json={"wait_seconds": 1}), "redis")
        # Committed is accepted: the reconcile rings it once Redis is back.
        [message_id] = await put(http, "q", "kept")
    assert await db.fetchval("SELECT status FROM tasks WHERE id = $1::uuid", message_id) == (
        "pending"
    )
    async with app_client(settings) as http:
        assert await lease(http, "q") == []  # not rung yet

        async def past_grace() -> bool:
            sql = "SELECT updated_at < now() - make_interval(secs => $1) FROM tasks"
            return bool(await db.fetchval(sql, settings.reconcile_grace_s))

        await wait_for(past_grace, what="the reconcile's grace period")
        await maintenance.reconcile_once(resources.engine, resources)
        [message] = await lease(http, "q")
        assert message["id"] == message_id
