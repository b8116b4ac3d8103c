"""The API's event feed reads the event stream only while someone listens, and a
waiter that wakes an idle feed still hears its task's end (tasks/feed.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from redis.asyncio import Redis

from app.embedded import EmbeddedValkey
from tasks.tests.fixtures import app_client, blocked_clients, make_settings, wait_for


async def stream_reads(redis: Redis) -> int:
    """XREADs Valkey has served: only the API's feed reads the event stream."""
    stats: Any = await redis.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


async def create(http: httpx.AsyncClient, count: int = 1) -> list[str]:
    ids = []
    for n in range(count):
        response = await http.post("/tasks", json={"message": f"feed {n}"})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def test_the_feed_reads_the_stream_only_while_someone_listens(
    database_url: str, namespace: str, valkey: EmbeddedValkey
) -> None:
    redis = Redis.from_url(valkey.url(), decode_responses=True)
    settings = make_settings(database_url, valkey.url(), namespace)
    try:
        async with app_client(settings) as http:
            [task_id] = await create(http)
            before = await stream_reads(redis)
            await create(http, 20)  # twenty events, and nobody listens
            assert await stream_reads(redis) == before

            # A waiter wakes the feed, and hears its task's end through it.
            started = time.monotonic()
            waiter = asyncio.create_task(
                http.get(f"/tasks/{task_id}", params={"wait": 30}, timeout=60)
            )
            await wait_for(lambda: _blocked(redis, 1), what="the feed to follow the stream")
            canceled = await http.patch(f"/tasks/{task_id}", json={"status": "canceled"})
            assert canceled.status_code == 200, canceled.text
            answer = await waiter
            assert answer.json()["status"] == "canceled"
            assert time.monotonic() - started < 30, "woken by its deadline, not by the event"
            assert await stream_reads(redis) > before

            # Nobody listens again: the read under way ends with the next event,
            # and then the feed reads no more.
            await create(http)
            await wait_for(lambda: _blocked(redis, 0), what="the feed to stop reading")
            idle = await stream_reads(redis)
            await create(http, 20)
            assert await stream_reads(redis) == idle
    finally:
        await redis.aclose()


async def _blocked(redis: Redis, expected: int) -> bool:
    return await blocked_clients(redis) == expected
