"""The Redis side: per queue, a sorted set of ready task ids that wakes workers
and a sorted set of ids due later; per limited kind, a set of parked ids; and a
channel that announces cancels.

Redis holds no state that matters: an id may vanish (the reconcile re-rings
it) or arrive twice (the claim skips it). A ready id's score is its rank
(priority plus fairness level) times the rank step, plus the time it became
ready: the lowest score is popped first, so rank decides and, within a rank,
the oldest. With PRIORITY_AGING_SECONDS the rank step is that many seconds, so
a task gains one rank over newer ones per period it waits; without, the step
is far beyond any time difference and the order is strict.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from app.lifespan import Resources
from app.pipelines import PackedPipeline, send_pipeline
from app.redis import Keys, RedisClient
from tasks import sharded
from tasks.sharded import ID_CHARS

Gathered = PackedPipeline  # a ring made, to send

STRICT_STEP_S = 1e10  # ~300 years: no wait makes up one rank


# Bell and Popped are made once per task on the hot paths; not frozen, as a
# frozen dataclass sets each field through object.__setattr__ (Bell: 1.6 µs to
# make, against 0.35). Nothing changes one once made.
@dataclass(slots=True)
class Bell:
    """Where and in what order a task waits: its queue, its rank, and the time
    (Unix seconds) it is or becomes ready; `kind` names its parked set, if any."""

    id: uuid.UUID
    queue: str
    rank: int
    ready_at_s: float
    kind: str = ""


@dataclass(slots=True)
class Popped:
    id: uuid.UUID
    queue: str
    score: float


class Doorbell:
    def __init__(self, resources: Resources) -> None:
        self.redis: RedisClient = resources.redis
        self.keys: Keys = resources.keys
        aging_s = resources.settings.priority_aging_s
        self.step_s = aging_s if aging_s > 0 else STRICT_STEP_S
        self.kind_limits = resources.settings.kind_concurrency
        # In a cluster, steps that cross hash slots go one slot at a time (tasks/sharded.py).
        self.cluster = resources.settings.redis_cluster
        self.spread = sharded.SpreadPop(self.redis) if self.cluster else None

    def score(self, bell: Bell) -> float:
        return bell.rank * self.step_s + bell.ready_at_s

    async def ring(self, bells: Iterable[Bell]) -> None:
        """Make tasks ready now, in their queue, at their place in the order."""
        await self.send(ready=bells)

    async def schedule(self, bells: Iterable[Bell]) -> None:
        """Tasks to ring at their `ready_at_s` (a delay, a retry after its backoff)."""
        await self.send(later=bells)

    async def send(
        self,
        *,
        ready: Iterable[Bell] = (),
        later: Iterable[Bell] = (),
        also: Sequence[Callable[[Any], None]] = (),
        sent: Callable[[], None] | None = None,
    ) -> None:
        """Ring `ready`, schedule `later`, and add the `also` steps (each adds
        commands to the pipeline, e.g. events.stage) in one round trip. `sent`:
        called once the commands are on their way, before Redis answers
        (app.pipelines.send_pipeline), or at once when there is nothing to send."""
        await send_gathered(self.gather(ready=ready, later=later, also=also), sent=sent)

    def gather(
        self,
        *,
        ready: Iterable[Bell] = (),
        later: Iterable[Bell] = (),
        also: Sequence[Callable[[Any], None]] = (),
        into: Gathered | None = None,
    ) -> Gathered | None:
        """What `send` sends, as a pipeline to send later with send_gathered (the
        intake makes it while PostgreSQL copies a batch), packed as far as it
        goes, added to `into` when given (a batch copied a slice at a time rings
        once); None: nothing to send."""
        by_key: dict[str, dict[str, float]] = {}
        by_queue: dict[str, dict[str, float]] = {}  # by_key's ready sets, by queue
        step_s = self.step_s
        for bell in ready:  # a thousand at a time: as score(), without a call per bell
            members = by_queue.get(bell.queue)
            if members is None:
                members = by_queue[bell.queue] = by_key.setdefault(self.keys.ready(bell.queue), {})
            members[str(bell.id)] = bell.rank * step_s + bell.ready_at_s
        queues: set[str] = set(by_queue)
        for bell in later:
            member = f"{bell.rank}:{bell.id}"
            by_key.setdefault(self.keys.scheduled(bell.queue), {})[member] = bell.ready_at_s
            queues.add(bell.queue)
        if not by_key and not also:
            return into
        gathered = PackedPipeline(self.redis.pipeline(transaction=False)) if into is None else into
        pipe = gathered.pipe
        for step in also:  # first: an event is never behind the ring it announces
            step(pipe)
        for key, members in by_key.items():
            pipe.zadd(key, members)
        if queues:
            pipe.sadd(self.keys.queues, *queues)
        gathered.pack()
        return gathered

    async def pop(self, queues: Sequence[str], *, count: int, timeout_s: float) -> list[Popped]:
        """Up to `count` ids from the first queue that has any, lowest score first;
        blocks (no polling) until one arrives or `timeout_s` passes. With
        `timeout_s` 0 it answers at once."""
        names = [self.keys.ready(queue) for queue in queues]
        reply: Any
        if self.spread is not None and len(names) > 1:
            reply = await self.spread.first(names, count=count, timeout_s=timeout_s)
        elif timeout_s > 0:
            reply = await self.redis.bzmpop(timeout_s, len(names), names, min=True, count=count)
        else:
            reply = await self.redis.zmpop(len(names), names, min=True, count=count)
        if not reply:
            return []
        queue = queues[names.index(str(reply[0]))]
        popped = []
        for member, score in reply[1]:
            try:
                popped.append(Popped(uuid.UUID(str(member)), queue, float(score)))
            except ValueError:
                continue  # not ours; the claim would skip it anyway
        return popped

    async def settle(self, timeout_s: float) -> None:
        """Before the client closes: let cluster pops still out come back (tasks/sharded.py)."""
        if self.spread is not None:
            await self.spread.settle(timeout_s)

    async def put_back(self, popped: Sequence[Popped]) -> None:
        """Return popped ids at the place they had (a claim that failed)."""
        if popped:
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in popped:
                    pipe.zadd(self.keys.ready(item.queue), {str(item.id): item.score})
                await pipe.execute()

    async def forget(self, bells: Sequence[Bell]) -> None:
        """Take ids of tasks that ended without running (expired, canceled) out of
        their ready, scheduled and parked sets, so nothing counts them as waiting."""
        if bells:
            async with self.redis.pipeline(transaction=False) as pipe:
                for bell in bells:
                    pipe.zrem(self.keys.ready(bell.queue), str(bell.id))
                    pipe.zrem(self.keys.scheduled(bell.queue), f"{bell.rank}:{bell.id}")
                    if bell.kind in self.kind_limits:
                        pipe.zrem(self.keys.parked(bell.kind), _parked(bell))
                await pipe.execute()

    async def park(self, bells: Sequence[Bell]) -> None:
        """Set aside ready tasks of a limited kind until one of its slots frees."""
        if bells:
            async with self.redis.pipeline(transaction=False) as pipe:
                for bell in bells:
                    pipe.zadd(self.keys.parked(bell.kind), {_parked(bell): self.score(bell)})
                await pipe.execute()

    async def unpark(self, kind: str, count: int) -> int:
        """Ring the first `count` parked tasks of `kind` again, in their order."""
        if count <= 0:
            return 0
        if self.cluster:
            return await sharded.unpark(self.redis, self.keys, kind, count)
        unpark = self.redis.register_script(_UNPARK)
        head, tail = self.keys.ready_affixes
        return int(await unpark(keys=[self.keys.parked(kind)], args=[count, head, tail]))

    async def parked_count(self, kind: str) -> int:
        """Tasks of a limited kind set aside, waiting for a free slot."""
        return int(await self.redis.zcard(self.keys.parked(kind)))

    async def slots_freed(self, kinds: Iterable[str]) -> None:
        """Tasks of these kinds stopped running: as many parked ones may try again."""
        if not self.kind_limits:
            return
        freed = Counter(kind for kind in kinds if kind in self.kind_limits)
        for kind, count in freed.items():
            await self.unpark(kind, count)

    async def promote_due(
        self, *, now_s: float | None = None, limit: int = 1000, also: Iterable[str] = ()
    ) -> int:
        """Ring the scheduled ids whose time has come, in every queue the queue
        list names and in `also` (a worker's own: in a cluster the list may be
        lost while the scheduled sets, on other nodes, are not)."""
        queues: set[Any] = {*await self.redis.smembers(self.keys.queues), *also}
        if not queues:
            return 0
        promote = self.redis.register_script(_PROMOTE)  # EVALSHA: the script is sent once
        now_s = time.time() if now_s is None else now_s
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                keys = [self.keys.scheduled(queue), self.keys.ready(queue)]
                args = [now_s, limit, self.step_s]
                if isinstance(pipe, Pipeline):
                    await promote(keys=keys, args=args, client=pipe)
                else:  # a cluster pipeline loads no script: EVAL sends it along
                    pipe.eval(_PROMOTE, 2, *keys, *args)
            moved = await pipe.execute()
        return sum(int(count) for count in moved)

    async def add_queues(self, names: Iterable[str]) -> None:
        """Name queues before they have had tasks (declared ones), so that they show."""
        names = list(names)
        if names:
            await self.redis.sadd(self.keys.queues, *names)

    async def known_queues(self) -> set[str]:
        return {str(name) for name in await self.redis.smembers(self.keys.queues)}

    async def present(self, bells: Sequence[Bell]) -> set[uuid.UUID]:
        """Which of these tasks Redis holds: ready, scheduled or parked. One round
        trip, one ZMSCORE per set touched, however many ids."""
        sets: dict[str, list[tuple[uuid.UUID, str]]] = {}
        for bell in bells:
            sets.setdefault(self.keys.ready(bell.queue), []).append((bell.id, str(bell.id)))
            member = f"{bell.rank}:{bell.id}"
            sets.setdefault(self.keys.scheduled(bell.queue), []).append((bell.id, member))
            sets.setdefault(self.keys.parked(bell.kind), []).append((bell.id, _parked(bell)))
        if not sets:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, members in sets.items():
                pipe.zmscore(key, [member for _, member in members])
            replies = await pipe.execute()
        return {
            task_id
            for members, scores in zip(sets.values(), replies, strict=True)
            for (task_id, _), score in zip(members, scores, strict=True)
            if score is not None
        }

    async def sweep_cursor(self) -> str | None:
        """Where the reconcile's walk over pending tasks goes on (any worker's)."""
        value = await self.redis.get(self.keys.sweep_cursor)
        return None if value is None else str(value)

    async def save_sweep_cursor(self, cursor: str | None) -> None:
        if cursor is None:
            await self.redis.delete(self.keys.sweep_cursor)
        else:
            await self.redis.set(self.keys.sweep_cursor, cursor, ex=3600)

    async def waiting(self, queue: str) -> int:
        """Ids waiting in a queue: ready plus scheduled."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.ready(queue))
            pipe.zcard(self.keys.scheduled(queue))
            ready, scheduled = await pipe.execute()
        return int(ready) + int(scheduled)

    async def announce_cancel(self, task_id: uuid.UUID) -> None:
        """Tell every worker at once; the heartbeat catches a missed message later."""
        await self.redis.publish(self.keys.cancel_channel, str(task_id))


def _parked(bell: Bell) -> str:
    return f"{bell.queue}:{bell.id}"


# Moves due ids from a queue's scheduled set to its ready set in one atomic
# step, so several workers promoting at once move each id once.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local step = tonumber(ARGV[3])
for i = 1, #due, 2 do
  local member = due[i]
  local sep = string.find(member, ':', 1, true)
  local rank = tonumber(string.sub(member, 1, sep - 1))
  redis.call('ZADD', KEYS[2], rank * step + tonumber(due[i + 1]), string.sub(member, sep + 1))
  redis.call('ZREM', KEYS[1], member)
end
return #due / 2
"""

# Parked members are `queue:id`; the ready set's name is built from the queue
# (ARGV: count, then what comes before and after the queue in the name). It
# touches keys it does not declare, so it runs on a single Redis only; a
# cluster unparks in two steps (tasks/sharded.py).
_UNPARK = """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
for i = 1, #popped, 2 do
  local member = popped[i]
  local queue = string.sub(member, 1, -(ID_CHARS + 2))
  local id = string.sub(member, -ID_CHARS)
  redis.call('ZADD', ARGV[2] .. queue .. ARGV[3], popped[i + 1], id)
end
return #popped / 2
""".replace("ID_CHARS", str(ID_CHARS))


async def send_gathered(pipe: Gathered | None, *, sent: Callable[[], None] | None = None) -> None:
    """Send what Doorbell.gather made; `sent` as for Doorbell.send."""
    if pipe is None:
        if sent is not None:
            sent()
        return
    await send_pipeline(pipe, sent=sent)
