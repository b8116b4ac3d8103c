"""The intake asks Redis nothing before its INSERT while nothing needs deciding
and Redis has just answered; once Redis stops answering it asks first again
and refuses with 503 (tasks/intake.py)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.embedded import EmbeddedValkey
from app.ids import uuid7
from app.lifespan import close_resources, open_resources
from app.redis import Keys
from tasks import intake
from tasks.submissions import NewTask
from tasks.tests.fixtures import app_client, make_settings, wait_for


@pytest.fixture(autouse=True)
def long_vouching(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow machine must not turn 'just answered' into 'a while ago'."""
    monkeypatch.setattr(intake, "REDIS_VOUCHED_S", 60.0)


async def pings(redis: Redis) -> int:
    stats: Any = await redis.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


async def post(http: httpx.AsyncClient, message: str) -> httpx.Response:
    return await http.post("/tasks", json={"message": message})


async def rung(redis: Redis, namespace: str, count: int) -> bool:
    """The default queue holds `count` ready ids: that many rings landed."""
    return bool(await redis.zcard(Keys(namespace).ready("default")) == count)


async def stored(db: asyncpg.Connection, message: str) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM tasks WHERE message = $1", message))


async def test_posts_after_an_answered_ring_send_no_ping(
    database_url: str, namespace: str, valkey: EmbeddedValkey
) -> None:
    redis = Redis.from_url(valkey.url(), decode_responses=True)
    try:
        async with app_client(make_settings(database_url, valkey.url(), namespace)) as http:
            assert (await post(http, "first")).status_code == 201
            before = await pings(redis)
            for n in range(10):
                assert (await post(http, f"then {n}")).status_code == 201
            assert await pings(redis) == before
    finally:
        await redis.aclose()


async def test_a_batch_is_answered_while_redis_works_on_its_ring(
    database_url: str, namespace: str, valkey: EmbeddedValkey
) -> None:
    """The ring is sent before the answers, so no worker hears of a task later
    than its creator; the answers do not wait for Redis to take it."""
    redis = Redis.from_url(valkey.url(), decode_responses=True)
    settings = make_settings(database_url, valkey.url(), namespace)
    try:
        async with app_client(settings) as http:
            assert (await post(http, "first")).status_code == 201  # Redis vouched for
            await wait_for(partial(rung, redis, namespace, 1), timeout_s=10,
                           what="the first ring landed")  # fmt: skip
            await redis.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
            try:
                answer = await asyncio.wait_for(
                    http.post("/tasks/batch", json={"tasks": [{"message": "a"}, {"message": "b"}]}),
                    timeout=20,
                )
                assert [item["status"] for item in answer.json()["results"]] == [201, 201]
                assert await rung(redis, namespace, 1)  # only the first: the ring is held
            finally:
                await redis.execute_command("CLIENT", "UNPAUSE")
            await wait_for(partial(rung, redis, namespace, 3), timeout_s=10,
                           what="the batch's ring landed")  # fmt: skip
    finally:
        await redis.aclose()


async def test_the_next_batch_is_written_while_redis_answers_the_last_ring(
    database_url: str, namespace: str, valkey: EmbeddedValkey, db: asyncpg.Connection
) -> None:
    """The intake goes on to the next batch without waiting for Redis to answer
    a ring; the next ring still waits for the one before, so rings land in
    order, and the next batch's answer for its own ring to go out."""
    redis = Redis.from_url(valkey.url(), decode_responses=True)
    settings = make_settings(database_url, valkey.url(), namespace)
    try:
        async with app_client(settings) as http:
            assert (await post(http, "first")).status_code == 201
            await wait_for(partial(rung, redis, namespace, 1), timeout_s=10,
                           what="the first ring landed")  # fmt: skip
            await redis.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
            try:
                held = await asyncio.wait_for(post(http, "held"), timeout=20)
                assert held.status_code == 201  # its ring is out, Redis's answer held
                following = asyncio.create_task(post(http, "next"))
                await wait_for(partial(stored, db, "next"), timeout_s=10,
                               what="the next batch written")  # fmt: skip
                assert not following.done()  # its ring waits for the one before
            finally:
                await redis.execute_command("CLIENT", "UNPAUSE")
            assert (await asyncio.wait_for(following, timeout=20)).status_code == 201
            await wait_for(partial(rung, redis, namespace, 3), timeout_s=10,
                           what="both rings landed")  # fmt: skip
    finally:
        await redis.aclose()


async def test_a_batch_committed_while_the_intake_closes_is_answered_as_created(
    database_url: str, namespace: str, valkey: EmbeddedValkey, db: asyncpg.Connection
) -> None:
    """Closed while its ring waits behind one Redis holds, a committed batch is
    answered with its task (the reconcile rings it), never refused: a refusal
    would have its creator send it again, a second task."""
    redis = Redis.from_url(valkey.url(), decode_responses=True)
    resources = open_resources(make_settings(database_url, valkey.url(), namespace))
    writer = intake.Intake(resources)
    writer.start()

    def task(message: str) -> NewTask:
        return NewTask(uuid7(), "echo", message, {}, 3, 300.0)

    try:
        await writer.submit(task("first"))  # Redis vouched for
        await redis.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
        try:
            await asyncio.wait_for(writer.submit(task("held")), timeout=20)  # ring out, held
            following = asyncio.create_task(writer.submit(task("next")))
            await wait_for(partial(stored, db, "next"), timeout_s=10,
                           what="the next batch written")  # fmt: skip
            closing = asyncio.create_task(writer.close(grace_s=0.1))
            row, created = await asyncio.wait_for(following, timeout=20)
            assert created and row["message"] == "next"
        finally:
            await redis.execute_command("CLIENT", "UNPAUSE")
        await asyncio.wait_for(closing, timeout=20)
    finally:
        await close_resources(resources)
        await redis.aclose()


async def test_limits_are_decided_in_redis_for_every_batch(
    database_url: str, namespace: str, valkey: EmbeddedValkey
) -> None:
    """With a queue cap, the answer of the previous batch says nothing of this one."""
    settings = make_settings(database_url, valkey.url(), namespace, queue_max_pending=3)
    async with app_client(settings) as http:
        codes = [(await post(http, f"capped {n}")).status_code for n in range(5)]
    assert codes == [201, 201, 201, 503, 503]


async def test_redis_lost_after_a_ring_commits_one_batch_then_refuses(
    database_url: str,
    namespace: str,
    valkey: EmbeddedValkey,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # However long the kill takes on a busy machine, the last answer still vouches.
    monkeypatch.setattr(intake, "REDIS_VOUCHED_S", 60.0)
    async with app_client(make_settings(database_url, valkey.url(), namespace)) as http:
        assert (await post(http, "before")).status_code == 201
        await asyncio.to_thread(valkey.kill)
        # Redis answered a moment ago: this one is committed, its ring fails.
        committed = await post(http, "in the instant")
        assert committed.status_code == 201, committed.text
        refused = await post(http, "after")
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"], refused.text
    rows = await db.fetch("SELECT message, status FROM tasks ORDER BY id")
    assert [(row["message"], row["status"]) for row in rows] == [
        ("before", "pending"),
        ("in the instant", "pending"),
    ]
