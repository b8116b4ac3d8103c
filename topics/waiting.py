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
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

from starlette.requests import Request

from app.lifespan import Resources
from app.redis import create_redis
from tasks.doorbell import Doorbell, Popped

MAX_WAIT_S = 20  # the longest `wait_seconds` a lease may ask for
MIN_BLOCK_S = 0.01  # Redis reads a zero timeout as "forever"

T = TypeVar("T")


class LongPoll:
    def __init__(self, resources: Resources) -> None:
        waiters = resources.settings.long_poll_max_waiters
        # A lease waits up to 20 s on one BZMPOP: the socket must outlast it.
        self._redis = create_redis(
            resources.settings, max_connections=waiters, read_timeout_s=MAX_WAIT_S + 5
        )
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


async def unless_hung_up(request: Request, work: Awaitable[T]) -> T | None:
    """Run `work`, but cancel it if the client hangs up first (None then): a
    consumer that died while its lease waited must not take the next message
    away from the living ones until its ack deadline."""
    task = asyncio.ensure_future(work)
    watch = asyncio.create_task(_hung_up(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    return None


async def _hung_up(request: Request) -> None:
    """Returns when the client is gone. The body has been read, so the server
    answers `receive` only then; should one answer anything else, look again
    in a while rather than spin."""
    while True:
        if (await request.receive())["type"] == "http.disconnect":
            return
        await asyncio.sleep(1.0)
