"""Leases that wait: a blocking pop on the queue's ready set, never a loop over
PostgreSQL. One per API process, opened by the lifespan.

Waiting leases have a Redis pool of their own, so that consumers blocked on
quiet queues never take the connections the rest of the API needs. At most
LONG_POLL_MAX_WAITERS wait at once per process; a lease beyond that waits for
a turn within its own `wait_seconds`.
"""

from __future__ import annotations

import asyncio
import dataclasses

from app.lifespan import Resources
from app.redis import create_redis
from tasks.doorbell import Doorbell, Popped

MIN_BLOCK_S = 0.01  # Redis reads a zero timeout as "forever"


class LongPoll:
    def __init__(self, resources: Resources) -> None:
        waiters = resources.settings.long_poll_max_waiters
        self._redis = create_redis(resources.settings, max_connections=waiters)
        self._doorbell = Doorbell(dataclasses.replace(resources, redis=self._redis))
        self._turns = asyncio.Semaphore(waiters)

    async def pop(self, queue: str, *, count: int, timeout_s: float) -> list[Popped]:
        """Up to `count` ids of `queue` as soon as there are any, or [] at `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._turns.acquire()
        except TimeoutError:
            return []
        try:
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                return []
            return await self._doorbell.pop(
                [queue], count=count, timeout_s=max(remaining_s, MIN_BLOCK_S)
            )
        finally:
            self._turns.release()

    async def close(self) -> None:
        await self._redis.aclose()
