"""Over its backlog caps the gateway refuses at once (503, Retry-After, nothing
queued), while the paths it passes straight through still reach the target."""

from __future__ import annotations

import asyncio

import asyncpg

from app.config import Settings
from app.lifespan import Resources
from gateway.tests.conftest import Upstream, assert_error, gateway_client
from tasks.tests.fixtures import WorkerFactory, wait_for


async def test_a_full_queue_refuses_with_503_while_pass_through_paths_still_arrive(
    settings: Settings, upstream: Upstream, db: asyncpg.Connection
) -> None:
    full = {"queue_max_pending": 2, "gateway_wait_s": 1}
    async with gateway_client(settings, **full) as gateway:  # no worker: the queue fills
        waiting = [asyncio.create_task(gateway.get(f"/work/{n}")) for n in range(2)]

        async def queued() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM tasks") == 2)

        await wait_for(queued, what="two queued requests")
        refused = await gateway.post("/work/3", json={})
        assert "QUEUE_MAX_PENDING" in assert_error(refused, 503)["detail"]
        assert refused.headers["Retry-After"] == "1"
        health = await gateway.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "up"}
        assert [assert_error(answer, 504)["status"] for answer in await asyncio.gather(*waiting)]
    assert await db.fetchval("SELECT count(*) FROM tasks") == 2  # the refused one: nothing
    assert [record["path"] for record in await upstream.requests()] == ["/health"]


async def test_over_the_kind_backlog_the_gateway_answers_503(
    settings: Settings,
    upstream: Upstream,
    start_full_worker: WorkerFactory,
    resources: Resources,
) -> None:
    limits = {"kind_concurrency": {"http": 1}, "kind_max_backlog": {"http": 1}}
    await start_full_worker(**limits)
    async with gateway_client(settings, **limits) as gateway:
        first = asyncio.create_task(gateway.get("/a", params={"hold": "h"}))
        await upstream.wait_requests(1)
        second = asyncio.create_task(gateway.get("/b"))

        async def parked() -> bool:
            return int(await resources.redis.zcard(resources.keys.parked("http"))) == 1

        await wait_for(parked, what="the second request to wait for the target's slot")
        refused = await gateway.get("/c")
        assert "KIND_MAX_BACKLOG" in assert_error(refused, 503)["detail"]
        assert refused.headers["Retry-After"] == "1"
        await upstream.release("h")
        assert [(await call).status_code for call in (first, second)] == [200, 200]
    assert [record["path"] for record in await upstream.requests()] == ["/a?hold=h", "/b"]
