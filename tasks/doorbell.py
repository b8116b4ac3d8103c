"""The Redis side: a list of task ids that wakes workers, a sorted set of ids
due later, and a channel that announces cancels.

Redis holds no state that matters: an id may vanish (the reconcile re-rings
it) or arrive twice (the claim skips it). Ids are pushed on the left and popped
from the right; ids given back go on the right, so they are popped next.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from redis.asyncio import Redis

from app.redis import Keys


async def ring(redis: Redis, keys: Keys, ids: Sequence[uuid.UUID]) -> None:
    if ids:
        await redis.lpush(keys.ready, *(str(task_id) for task_id in ids))


async def ring_first(redis: Redis, keys: Keys, ids: Sequence[uuid.UUID]) -> None:
    """Give ids back at the end that is popped next (shutdown, failed claim)."""
    if ids:
        await redis.rpush(keys.ready, *(str(task_id) for task_id in reversed(ids)))


async def pop(redis: Redis, keys: Keys, *, count: int, timeout_s: float) -> list[uuid.UUID]:
    """Up to `count` ids; blocks (no polling) until one arrives or `timeout_s` passes."""
    reply = await redis.blmpop(timeout_s, 1, keys.ready, direction="RIGHT", count=count)
    if not reply:
        return []
    ids = []
    for raw in reply[1]:
        try:
            ids.append(uuid.UUID(str(raw)))
        except ValueError:
            continue  # not ours; the claim would skip it anyway
    return ids


async def length(redis: Redis, keys: Keys) -> int:
    return int(await redis.llen(keys.ready))


async def members(redis: Redis, keys: Keys) -> set[str]:
    return {str(raw) for raw in await redis.lrange(keys.ready, 0, -1)}


async def schedule(redis: Redis, keys: Keys, due: Sequence[tuple[uuid.UUID, float]]) -> None:
    """Ids to ring at a later time (Unix seconds), e.g. a retry after its backoff."""
    if due:
        await redis.zadd(keys.scheduled, {str(task_id): at_s for task_id, at_s in due})


# Moves due ids from the scheduled set to the ready list in one atomic step, so
# several workers promoting at once move each id once.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then
  redis.call('RPUSH', KEYS[2], unpack(due))
  redis.call('ZREM', KEYS[1], unpack(due))
end
return #due
"""


async def promote_due(redis: Redis, keys: Keys, *, now_s: float, limit: int = 1000) -> int:
    """Ring the scheduled ids whose time has come; they are popped next."""
    promote = redis.register_script(_PROMOTE)  # EVALSHA: the script is sent once
    moved = await promote(keys=[keys.scheduled, keys.ready], args=[now_s, limit])
    return int(moved)


async def announce_cancel(redis: Redis, keys: Keys, task_id: uuid.UUID) -> None:
    """Tell every worker at once; the heartbeat catches a missed message later."""
    await redis.publish(keys.cancel_channel, str(task_id))


async def backlog(redis: Redis, keys: Keys) -> int:
    """Ids waiting: ready plus scheduled (a rung-twice id counts twice; close enough to shed)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.llen(keys.ready)
        pipe.zcard(keys.scheduled)
        ready, scheduled = await pipe.execute()
    return int(ready) + int(scheduled)
