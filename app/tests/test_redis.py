"""The Redis pools pack commands with hiredis: the bytes must be what redis-py's
own asyncio packing sends, and what it refuses must still be refused. A pipeline
sent by send_pipeline answers as redis-py's would, and never leaves a pooled
connection with answers unread."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError, ResponseError

from app.config import Settings
from app.redis import create_reader_redis, create_redis, send_pipeline
from tasks.tests.fixtures import blocked_clients, wait_for

COMMANDS: list[tuple[Any, ...]] = [
    ("ZADD", "ns:{q:default}:ready", 1764800000.123456, "0192a0c4-1", 5e-324, "b", -0.0, "c"),
    ("CLIENT SETNAME", "taskline-worker"),  # a command name of two words
    (b"SET", b"key", b"\x00\xffbinary", "EX", 30),
    ("XADD", "ns:{g}:events", "*", "e", '[["id","créé",null,7]]', "n", 2**63 - 1),
    ("HSET", "h", "k", memoryview(b"view"), "big", "x" * 10_000),
    ("PING",),
]


def packed(connection: Connection, command: tuple[Any, ...]) -> bytes:
    return b"".join(bytes(part) for part in connection.pack_command(*command))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: str(command[0]))
async def test_commands_are_packed_to_the_bytes_redis_py_sends(
    settings: Settings, command: tuple[Any, ...]
) -> None:
    for client in (create_redis(settings), create_reader_redis(settings, read_timeout_s=5)):
        ours = client.connection_pool.make_connection()
        assert type(ours) is not Connection  # the pool's own class, packing in C
        assert packed(ours, command) == packed(Connection(), command)
        await client.aclose()


@pytest.mark.parametrize("value", [None, True, {"a": 1}, [1, 2]])
async def test_a_value_redis_py_refuses_is_refused_alike(settings: Settings, value: Any) -> None:
    client = create_redis(settings)
    with pytest.raises(DataError):
        Connection().pack_command("SET", "key", value)
    with pytest.raises(DataError):
        client.connection_pool.make_connection().pack_command("SET", "key", value)
    await client.aclose()


async def test_values_make_the_round_trip(settings: Settings) -> None:
    client = create_redis(settings)
    key = f"{settings.redis_queue_name}:roundtrip"
    try:
        await client.zadd(key, {"créé": 1764800000.123456, "b": -2.5})
        assert await client.zrange(key, 0, -1, withscores=True) == [
            ("b", -2.5), ("créé", 1764800000.123456),
        ]  # fmt: skip
    finally:
        await client.delete(key)
        await client.aclose()


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
