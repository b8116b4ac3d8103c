"""A pipeline sent by send_pipeline answers as redis-py's would, and never leaves
a pooled connection with answers unread; one packed ahead sends the same bytes,
also for the commands added after its last pack."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.config import Settings
from app.pipelines import PackedPipeline, send_pipeline
from app.redis import create_redis
from tasks.tests.fixtures import blocked_clients, wait_for


async def test_a_pipeline_runs_whole_and_raises_its_first_error(settings: Settings) -> None:
    client = create_redis(settings, max_connections=1)
    key = f"{settings.redis_queue_name}:pipeline"
    try:
        pipe = client.pipeline(transaction=False)
        pipe.set(key, "text").incr(key).hset(f"{key}:h", "f", "v").incr(f"{key}:n")
        with pytest.raises(ResponseError, match="not an integer"):
            await send_pipeline(pipe)
        # Every command ran, and the one connection answers the next command
        # with its own answer, not one left over.
        assert await client.hget(f"{key}:h", "f") == "v"
        assert await client.get(f"{key}:n") == "1"
        pipe = client.pipeline(transaction=False)
        await send_pipeline(pipe)  # nothing gathered: nothing sent
    finally:
        await client.delete(key, f"{key}:h", f"{key}:n")
        await client.aclose()


async def test_a_pipeline_goes_on_a_new_connection_when_redis_closed_its_own(
    settings: Settings,
) -> None:
    client = create_redis(settings, max_connections=1)
    admin = Redis.from_url(settings.cache_url, decode_responses=True)
    key = f"{settings.redis_queue_name}:pipeline"
    try:
        pooled = await client.client_id()
        assert await admin.client_kill_filter(_id=pooled) == 1
        pipe = client.pipeline(transaction=False)
        pipe.set(key, "after")
        await send_pipeline(pipe)
        assert await admin.get(key) == "after"
        assert await client.client_id() != pooled
    finally:
        await admin.delete(key)
        await admin.aclose()
        await client.aclose()


async def test_a_pipeline_canceled_mid_flight_leaves_no_answer_behind(
    settings: Settings,
) -> None:
    """Canceled while Redis holds its answer back (a BLPOP): its connection is
    closed, so the pool's next command cannot read the late answer as its own."""
    client = create_redis(settings, max_connections=1)
    admin = Redis.from_url(settings.cache_url, decode_responses=True)
    key = f"{settings.redis_queue_name}:pipeline"
    blocked_before = await blocked_clients(admin)
    try:
        await admin.set(f"{key}:s", "mine")
        pipe = client.pipeline(transaction=False)
        pipe.blpop([f"{key}:list"], timeout=30)
        sending = asyncio.create_task(send_pipeline(pipe))

        async def blocked() -> bool:
            return await blocked_clients(admin) > blocked_before

        await wait_for(blocked, timeout_s=10)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        await admin.rpush(f"{key}:list", "late")
        assert await client.get(f"{key}:s") == "mine"
        # The BLPOP's connection is gone: nothing took the element.
        assert await admin.lrange(f"{key}:list", 0, -1) == ["late"]
    finally:
        await admin.delete(f"{key}:s", f"{key}:list")
        await admin.aclose()
        await client.aclose()


async def test_sent_is_called_once_the_commands_are_out_before_their_answers(
    settings: Settings,
) -> None:
    """Whoever `sent` wakes runs while Redis works: here, while a BLPOP holds
    the pipeline's answer back."""
    client = create_redis(settings, max_connections=1)
    admin = Redis.from_url(settings.cache_url, decode_responses=True)
    key = f"{settings.redis_queue_name}:sent"
    calls: list[None] = []
    try:
        pipe = client.pipeline(transaction=False)
        pipe.blpop([key], timeout=30)
        sending = asyncio.create_task(send_pipeline(pipe, sent=lambda: calls.append(None)))

        async def called() -> bool:
            return len(calls) == 1

        await wait_for(called, timeout_s=10)
        assert not sending.done()  # the answer is still out
        await admin.rpush(key, "in")
        await asyncio.wait_for(sending, 10)
        assert len(calls) == 1
    finally:
        await admin.delete(key)
        await admin.aclose()
        await client.aclose()


async def test_sent_is_called_once_when_the_send_is_retried(settings: Settings) -> None:
    client = create_redis(settings, max_connections=1)
    admin = Redis.from_url(settings.cache_url, decode_responses=True)
    key = f"{settings.redis_queue_name}:sent"
    calls: list[None] = []
    try:
        # Redis closed the pooled connection: the first send fails on it, the
        # retry goes on a new one.
        assert await admin.client_kill_filter(_id=await client.client_id()) == 1
        pipe = client.pipeline(transaction=False)
        pipe.set(key, "after")
        await send_pipeline(pipe, sent=lambda: calls.append(None))
        assert await admin.get(key) == "after"
        assert len(calls) == 1
    finally:
        await admin.delete(key)
        await admin.aclose()
        await client.aclose()


async def test_a_pipeline_packed_ahead_sends_what_was_added_after_its_pack(
    settings: Settings,
) -> None:
    client = create_redis(settings, max_connections=1)
    key = f"{settings.redis_queue_name}:packed"
    try:
        packed = PackedPipeline(client.pipeline(transaction=False))
        packed.pipe.zadd(key, {"a": 1.5, "créé": 1764800000.123456}).sadd(f"{key}:s", "x")
        ahead = list(packed.pack())
        packed.pipe.incr(f"{key}:n").hset(key, "f", "v")  # after the pack: WRONGTYPE
        commands = [args for args, _ in packed.pipe.command_stack]
        connection = client.connection_pool.make_connection()
        assert b"".join(packed.pack()) == b"".join(connection.pack_commands(commands))
        assert packed.pack()[: len(ahead)] == ahead  # packed once, not again
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await send_pipeline(packed)
        assert await client.zrange(key, 0, -1, withscores=True) == [
            ("a", 1.5), ("créé", 1764800000.123456),
        ]  # fmt: skip
        assert await client.get(f"{key}:n") == "1"  # every answer read: this one is its own
    finally:
        await client.delete(key, f"{key}:s", f"{key}:n")
        await client.aclose()


async def test_a_pipeline_packed_ahead_with_nothing_in_it_sends_nothing(
    settings: Settings,
) -> None:
    client = create_redis(settings, max_connections=1)
    calls: list[None] = []
    try:
        packed = PackedPipeline(client.pipeline(transaction=False))
        assert packed.pack() == []
        await send_pipeline(packed, sent=lambda: calls.append(None))
        assert calls == []
        assert await client.ping()
    finally:
        await client.aclose()
