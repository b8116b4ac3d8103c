"""What the gateway refuses itself, before anything is queued: oversized
requests, its own prefix, a store that is down; and how it documents itself."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from app.config import Settings
from app.embedded import EmbeddedValkey
from gateway.tests.conftest import Upstream, assert_error, gateway_client


async def test_oversized_requests_are_refused_and_nothing_is_queued(
    gateway: httpx.AsyncClient, upstream: Upstream, db: asyncpg.Connection
) -> None:
    big_body = await gateway.post("/upload", content=b"x" * (128 * 1024 + 1))
    assert_error(big_body, 413)
    big_headers = await gateway.get("/a", headers={f"x-h{n}": "v" * 1000 for n in range(20)})
    assert_error(big_headers, 431)
    assert_error(await gateway.get("/_gateway/not-a-route"), 404)
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
    assert await upstream.requests() == []


async def test_with_redis_down_queued_paths_get_503_and_pass_through_paths_still_work(
    settings: Settings, valkey: EmbeddedValkey, upstream: Upstream
) -> None:
    async with gateway_client(settings, redis_url=valkey.url()) as gateway:
        await asyncio.to_thread(valkey.stop)
        refused = await gateway.post("/orders", json={"n": 1})
        assert "redis" in assert_error(refused, 503)["detail"]
        assert refused.headers["Retry-After"] == "1"
        assert (await gateway.get("/health")).json() == {"status": "up"}
        ready = await gateway.get("/_gateway/ready")
        assert ready.status_code == 503 and ready.json()["redis"].startswith("unavailable")
    assert [record["path"] for record in await upstream.requests()] == ["/health"]


async def test_the_gateways_own_openapi_documents_every_answer(
    gateway: httpx.AsyncClient,
) -> None:
    spec = (await gateway.get("/_gateway/openapi.json")).json()
    forwarded = spec["paths"]["/{path}"]
    assert set(forwarded) == {"get", "head", "post", "put", "patch", "delete", "options"}
    for operation in forwarded.values():
        assert {"200", "413", "422", "429", "431", "502", "503", "504"} <= set(
            operation["responses"]
        )
    assert {"/_gateway/health", "/_gateway/ready", "/_gateway/queues"} <= set(spec["paths"])
