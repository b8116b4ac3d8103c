"""The doorbell's steps that cross hash slots, done one slot at a time, for a
Redis Cluster (REDIS_CLUSTER=true).

On a single Redis the doorbell pops from several queues with one BZMPOP and
moves a kind's parked tasks back to their queues with one script. In a
cluster a command or script touches the keys of one hash tag only (app/redis.py
Keys: one tag per queue, one per kind), so here:

- `SpreadPop.first`: the queues in the order served, each without blocking;
  the first that has ids wins. If none has, a blocking pop on every queue at
  once (each on its own node's connection); the first to answer wins, and
  whatever the others take afterwards goes back where it was.
- `unpark`: ZPOPMIN on the kind's parked set, then one ZADD per queue,
  pipelined (the cluster client sends each node its share at once).

Between two steps an id is out of Redis for a moment; should the process die
right then, until the reconcile rings it again. Never for good: PostgreSQL
holds every pending task, and the reconcile rings those Redis does not hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from app.errors import is_store_error
from app.redis import Keys, RedisClient

log = logging.getLogger("taskline.worker")

ID_CHARS = 36  # a task id as text; parked members are `queue:id`

# What BZMPOP and ZMPOP answer: the key popped from, and [member, score] pairs.
Reply = tuple[str, list[tuple[Any, Any]]]


class SpreadPop:
    """Pops across queues that live on different slots. One per Doorbell: it
    keeps the late answers of its blocking pops until they are put back."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self._late: set[asyncio.Future[Any]] = set()

    async def first(self, names: Sequence[str], *, count: int, timeout_s: float) -> Reply | None:
        """Up to `count` ids from the first of these ready sets that has any."""
        for name in names:
            reply: Any = await self.redis.zmpop(1, [name], min=True, count=count)
            if reply:
                return _reply(reply)
        if timeout_s <= 0:
            return None
        return await self._block(names, count=count, timeout_s=timeout_s)

    async def _block(self, names: Sequence[str], *, count: int, timeout_s: float) -> Reply | None:
        pops = [
            asyncio.ensure_future(self.redis.bzmpop(timeout_s, 1, [name], min=True, count=count))
            for name in names
        ]
        winner: asyncio.Future[Any] | None = None
        try:
            pending: set[asyncio.Future[Any]] = set(pops)
            while pending and winner is None:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # In the order served, among those that answered with ids.
                winner = next((pop for pop in pops if _has_ids(pop)), None)
        finally:
            for pop in pops:
                if pop is not winner:
                    self._put_back_when_done(pop)
        if winner is not None:
            return _reply(winner.result())
        failed = [pop.exception() for pop in pops if pop.done() and not pop.cancelled()]
        error = next((error for error in failed if error is not None), None)
        if error is not None:
            raise error
        return None

    async def settle(self, timeout_s: float) -> None:
        """Wait (bounded) for the pops that lost a race to end and put back what
        they took, before the client closes under them."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._late:
            remaining_s = deadline - asyncio.get_running_loop().time()
            if remaining_s <= 0:
                return
            await asyncio.wait(list(self._late), timeout=remaining_s)

    def _put_back_when_done(self, pop: asyncio.Future[Any]) -> None:
        """A pop that lost the race (or was left behind by a cancel) may still
        take ids: they go back at their place (the same scores)."""

        def done(pop: asyncio.Future[Any]) -> None:
            self._late.discard(pop)
            if _has_ids(pop):
                self._keep(asyncio.ensure_future(self._put_back(_reply(pop.result()))))

        self._keep(pop)
        pop.add_done_callback(done)

    def _keep(self, future: asyncio.Future[Any]) -> None:
        self._late.add(future)
        future.add_done_callback(self._late.discard)

    async def _put_back(self, reply: Reply) -> None:
        name, pairs = reply
        try:
            await self.redis.zadd(name, {str(member): float(score) for member, score in pairs})
        except Exception as error:
            if not is_store_error(error):
                raise
            log.warning("could not put back %d popped id(s) (%s); the reconcile rings them",
                        len(pairs), error)  # fmt: skip


def _has_ids(pop: asyncio.Future[Any]) -> bool:
    """Done, without error, with ids (an error is read here, so never unseen)."""
    return pop.done() and not pop.cancelled() and pop.exception() is None and bool(pop.result())


def _reply(reply: Any) -> Reply:
    return str(reply[0]), list(reply[1])


async def unpark(redis: RedisClient, keys: Keys, kind: str, count: int) -> int:
    """Ring the first `count` parked tasks of `kind` again, in their order."""
    popped: Any = await redis.zpopmin(keys.parked(kind), count)
    by_queue: dict[str, dict[str, float]] = {}
    for member, score in popped:
        text = str(member)
        queue, task_id = text[: -(ID_CHARS + 1)], text[-ID_CHARS:]
        by_queue.setdefault(keys.ready(queue), {})[task_id] = float(score)
    if by_queue:
        async with redis.pipeline(transaction=False) as pipe:
            for key, members in by_queue.items():
                pipe.zadd(key, members)
            await pipe.execute()
    return len(popped)
