"""The Redis pools pack commands with hiredis: the bytes must be what redis-py's
own asyncio packing sends, and what it refuses must still be refused."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from app.config import Settings
from app.redis import create_reader_redis, create_redis

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
