"""The doorbell's steps that cross hash slots, done one slot at a time, for a
Redis Cluster (REDIS_CLUSTER=true).

On a single Redis the doorbell pops from several queues with one BZMPOP and
moves a kind's parked tasks back to their queues with one script. In a
cluster a command or script touches the keys of one hash tag only (app/redis.py
Keys: one tag per queue, one per kind), so here:

- `SpreadPop.first`: the queues in the order served, each without blocking;
  the first that has ids wins. If none has, a blocking pop on every queue at
  once (each on its own node's connection); the first to answer wins. The
  others stay out for the next call; ids one of them takes while no call
  waits go back where they were (the same score).
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

from app.redis import Keys, RedisClient

log = logging.getLogger("taskline.worker")

ID_CHARS = 36  # a task id as text; parked members are `queue:id`

# What BZMPOP and ZMPOP answer: the key popped from, and [member, score] pairs.
Reply = tuple[str, list[tuple[Any, Any]]]


class SpreadPop:
    """Pops across queues that live on different slots. One per Doorbell, which
    keeps at most one blocking pop per queue out: a pop that lost a race goes
    on waiting and serves the next call (no new connection per call); should
    it take ids nobody waits for any more, it puts them back."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self._out: dict[str, asyncio.Future[Any]] = {}  # a blocking pop per ready set
        self._wanted: set[asyncio.Future[Any]] = set()  # pops a call waits on now
        self._late: set[asyncio.Future[Any]] = set()  # put-backs under way

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
        pops = [self._pop_out(name, count, timeout_s) for name in names]
        self._wanted.update(pops)
        winner: asyncio.Future[Any] | None = None
        try:
            pending: set[asyncio.Future[Any]] = set(pops)
            while pending and winner is None:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # In the order served, among those that answered with ids.
                winner = next((pop for pop in pops if _has_ids(pop)), None)
        finally:
            self._wanted.difference_update(pops)
            for pop in pops:  # answered too, but lost: back; still out: see _pop_out
                if pop is not winner and _has_ids(pop):
                    self._put_back(_reply(pop.result()))
        if winner is not None:
            name, pairs = _reply(winner.result())
            if len(pairs) > count:  # a pop out since an earlier call, for more slots
                self._put_back((name, pairs[count:]))
            return name, pairs[:count]
        _raise_first_error(pops)
        return None

    def _pop_out(self, name: str, count: int, timeout_s: float) -> asyncio.Future[Any]:
        """The blocking pop on `name` still out, else a new one."""
        pop = self._out.get(name)
        if pop is not None and not pop.done():
            return pop
        pop = asyncio.ensure_future(self.redis.bzmpop(timeout_s, 1, [name], min=True, count=count))
        self._out[name] = pop

        def done(pop: asyncio.Future[Any]) -> None:
            if self._out.get(name) is pop:
                del self._out[name]
            if pop not in self._wanted and _has_ids(pop):  # nobody waits for it now
                self._put_back(_reply(pop.result()))

        pop.add_done_callback(done)
        return pop

    async def settle(self, timeout_s: float) -> None:
        """Wait (bounded) for the pops still out to end and put back what they
        took, before the client closes under them."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._out or self._late:
            remaining_s = deadline - asyncio.get_running_loop().time()
            if remaining_s <= 0:
                return
            await asyncio.wait([*self._out.values(), *self._late], timeout=remaining_s)

    def _put_back(self, reply: Reply) -> None:
        """Ids popped for nobody go back at their place (the same scores)."""
        putting = asyncio.ensure_future(self._zadd(reply))
        self._late.add(putting)
        putting.add_done_callback(self._late.discard)

    async def _zadd(self, reply: Reply) -> None:
        name, pairs = reply
        try:
            await self.redis.zadd(name, {str(member): float(score) for member, score in pairs})
        except Exception as error:  # in the background: logged, never raised
            log.warning("could not put back %d popped id(s) (%s); the reconcile rings them",
                        len(pairs), error)  # fmt: skip


def _has_ids(pop: asyncio.Future[Any]) -> bool:
    """Done, without error, with ids (an error is read here, so never unseen)."""
    return pop.done() and not pop.cancelled() and pop.exception() is None and bool(pop.result())


def _reply(reply: Any) -> Reply:
    return str(reply[0]), list(reply[1])


def _raise_first_error(pops: Sequence[asyncio.Future[Any]]) -> None:
    """No pop had ids: raise what one of them raised, if any did."""
    for pop in pops:
        error = pop.exception() if pop.done() and not pop.cancelled() else None
        if error is not None:
            raise error


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
