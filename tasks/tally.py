"""Counters that every process adds to and every API process reads alike.

They live in Redis hashes, so many API processes and workers report one set of
numbers, and a restarted process loses nothing it had sent. Writers add to
them in a pipeline they send anyway (the event publication: one round trip per
batch, never per task); a worker gathers its histogram observations per batch
and sends them with its next event entry.

`keys.tally` holds monotonic counters, one field each:

- `e|<event>|<queue>|<kind>`: task events (created, started, completed, ...)
- `h|<histogram>|<label>|<bucket>`: observations that fell in bucket number
  `<bucket>` of BUCKETS_S (not cumulative; len(BUCKETS_S) is +Inf), and
  `s|<histogram>|<label>`: their sum, in microseconds
- `r|<reason>`: admission refusals; `x|<name>`: what the reconcile sweep did

`keys.tally_minute(minute)` holds `<event>|<queue>` counts of one minute, kept
for MINUTE_TTL_S, for charts of recent throughput.

Counts are hints like events: a batch whose pipeline fails is not counted.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

from app.lifespan import Resources
from app.redis import Keys

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
MINUTE_TTL_S = 2 * 3600

# Histograms
DURATION = "duration"  # a handler's run, by kind
START_DELAY = "start"  # from when a task was due (its POST, or its run_at) to its start, by queue

# Reasons of admission refusals, and what the reconcile sweep counts
RATE_LIMIT, QUEUE_FULL = "rate_limit", "queue_full"
RERUNG, LEASES_RECOVERED = "rerung", "leases_recovered"

_EVENT_QUEUE_KIND = itemgetter(1, 3, 4)  # of tasks.events.Event


def count_events(counts: Counter[str], events: Iterable[Any]) -> None:
    """Add a batch of tasks.events.Event to `counts` (tallied in C, then named)."""
    for (event, queue, kind), n in Counter(map(_EVENT_QUEUE_KIND, events)).items():
        counts[f"e|{event}|{queue}|{kind}"] += n


def observe(counts: Counter[str], histogram: str, label: str, seconds: float) -> None:
    counts[f"h|{histogram}|{label}|{bisect_left(BUCKETS_S, seconds)}"] += 1
    counts[f"s|{histogram}|{label}"] += round(max(seconds, 0.0) * 1e6)


def stage(pipe: Any, keys: Keys, counts: Mapping[str, int], *, now_s: float | None = None) -> None:
    """Add the increments to a pipeline: HINCRBY per field, and the per-minute
    counts of the events among them."""
    if not counts:
        return
    minute: Counter[str] = Counter()
    for field, n in counts.items():
        pipe.hincrby(keys.tally, field, n)
        if field.startswith("e|"):
            event, queue, _ = field[2:].split("|", 2)
            minute[f"{event}|{queue}"] += n
    if minute:
        key = keys.tally_minute(int((time.time() if now_s is None else now_s) // 60))
        for field, n in minute.items():
            pipe.hincrby(key, field, n)
        pipe.expire(key, MINUTE_TTL_S)


async def send(resources: Resources, counts: Mapping[str, int]) -> None:
    """Add counts in a round trip of their own (for writers with no pipeline)."""
    if not counts:
        return
    async with resources.redis.pipeline(transaction=False) as pipe:
        stage(pipe, resources.keys, counts)
        await pipe.execute()


# Reading ---------------------------------------------------------------------


async def read(resources: Resources) -> dict[str, int]:
    raw = await resources.redis.hgetall(resources.keys.tally)
    return {str(field): int(value) for field, value in raw.items()}


async def per_minute(resources: Resources, *, minutes: int) -> list[tuple[int, dict[str, int]]]:
    """The last `minutes` whole minutes and the current one, oldest first: each
    minute's start (Unix seconds) and its `<event>|<queue>` counts."""
    now_minute = int(time.time() // 60)
    wanted = list(range(now_minute - minutes, now_minute + 1))
    async with resources.redis.pipeline(transaction=False) as pipe:
        for minute in wanted:
            pipe.hgetall(resources.keys.tally_minute(minute))
        replies = await pipe.execute()
    return [
        (minute * 60, {str(k): int(v) for k, v in reply.items()})
        for minute, reply in zip(wanted, replies, strict=True)
    ]
