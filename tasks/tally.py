"""Counters that every process adds to and every API process reads alike.

They live in Redis hashes, so many API processes and workers report one set of
numbers, and a restarted process loses nothing it had sent. Writers add to
them in a pipeline they send anyway. Task events are counted by Redis itself
as their entry is appended to the event stream (APPEND_AND_COUNT replaces the
XADD: no command and no work of their own for the writer). A worker gathers
its histogram observations (`Histograms`) and sends them with an event entry
at most every COUNTS_EVERY_S: a few HINCRBYs per half second, not per entry.

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
from collections.abc import Mapping
from typing import Any

from app.lifespan import Resources
from app.redis import Keys

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
MINUTE_TTL_S = 2 * 3600
COUNTS_EVERY_S = 0.5

# Histograms
DURATION = "duration"  # a handler's run, by kind
START_DELAY = "start"  # from when a task was due (its POST, or its run_at) to its start, by queue

# Reasons of admission refusals, and what the reconcile sweep counts
RATE_LIMIT, QUEUE_FULL = "rate_limit", "queue_full"
RERUNG, LEASES_RECOVERED = "rerung", "leases_recovered"

# Appends an entry of task events to the stream and counts them, in Redis: the
# writer pays for one command, as for a plain XADD.
# KEYS: the stream, the counters hash, this minute's hash.
# ARGV: the stream's cap, the entry's `t` and `e` fields, the minute hash's TTL.
APPEND_AND_COUNT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[2], 'e', ARGV[3])
local counts, minute = {}, {}
for _, row in ipairs(cjson.decode(ARGV[3])) do
  local event, queue = tostring(row[2]), tostring(row[4])
  local field = 'e|' .. event .. '|' .. queue .. '|' .. tostring(row[5])
  counts[field] = (counts[field] or 0) + 1
  minute[event .. '|' .. queue] = (minute[event .. '|' .. queue] or 0) + 1
end
for field, n in pairs(counts) do redis.call('HINCRBY', KEYS[2], field, n) end
for field, n in pairs(minute) do redis.call('HINCRBY', KEYS[3], field, n) end
redis.call('EXPIRE', KEYS[3], ARGV[4])
return id
"""


def stage_entry(
    pipe: Any, keys: Keys, fields: Mapping[str, str | bytes], *, max_entries: int
) -> Any:
    """Add an event entry (tasks.events.encode) to the stream, counted, to a
    pipeline; given the client itself, what it answers is to be awaited."""
    return pipe.eval(
        APPEND_AND_COUNT, 3, keys.events, keys.tally, keys.tally_minute(_minute()),
        max_entries, fields["t"], fields["e"], MINUTE_TTL_S,
    )  # fmt: skip


def _minute(now_s: float | None = None) -> int:
    return int((time.time() if now_s is None else now_s) // 60)


class Histograms:
    """Observations a worker gathers between two sends: per histogram and label,
    a count per bucket and the sum. No object is made per observation."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, list[float]]] = {}
        self.taken_at_s = time.monotonic()

    def __bool__(self) -> bool:
        return bool(self.data)

    def observe(self, histogram: str, label: str, seconds: float) -> None:
        labels = self.data.get(histogram)
        if labels is None:
            labels = self.data[histogram] = {}
        counts = labels.get(label)
        if counts is None:
            counts = labels[label] = [0.0] * (len(BUCKETS_S) + 2)  # buckets, +Inf, sum
        counts[bisect_left(BUCKETS_S, seconds)] += 1
        counts[-1] += seconds

    def due(self, every_s: float) -> bool:
        return bool(self.data) and time.monotonic() - self.taken_at_s >= every_s

    def take(self) -> Counter[str]:
        """The observations as tally fields; starts over."""
        fields: Counter[str] = Counter()
        for histogram, labels in self.data.items():
            for label, counts in labels.items():
                for bucket, n in enumerate(counts[:-1]):
                    if n:
                        fields[f"h|{histogram}|{label}|{bucket}"] += int(n)
                fields[f"s|{histogram}|{label}"] += int(max(counts[-1], 0.0) * 1e6)
        self.data = {}
        self.taken_at_s = time.monotonic()
        return fields


def stage(pipe: Any, keys: Keys, counts: Mapping[str, int]) -> None:
    """Add the increments (tally fields) to a pipeline: one HINCRBY each."""
    for field, n in counts.items():
        if n:
            pipe.hincrby(keys.tally, field, n)


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
