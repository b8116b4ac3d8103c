"""Admission controls, shared by every API process through Redis: a token bucket
per client, load shedding on the number of tasks waiting in a queue, and the
owners' fairness levels. None touches PostgreSQL; the intake asks for the last
two once per batch of POSTs, in one round trip."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from app.lifespan import Resources
from tasks.exceptions import Overloaded, RateLimited

# Refill and take in one atomic step, on the server's clock, so API processes
# on several machines share one bucket per client.
_BUCKET_SCRIPT = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""

# Per owner: drop submissions older than the window, count the rest, add the
# new ones; all in one atomic step, so concurrent API processes never read a
# count and write it back. Past the last threshold the level stops growing,
# so no more entries than that are kept.
# ARGV: window, then per key: cap, n, and n task ids.
_WINDOW_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window = tonumber(ARGV[1])
local counts = {}
local at = 2
for i, key in ipairs(KEYS) do
  local cap, n = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  at = at + 2
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  counts[i] = redis.call('ZCARD', key)
  for j = 0, n - 1 do redis.call('ZADD', key, now, ARGV[at + j]) end
  at = at + n
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return counts
"""

ANONYMOUS = "-"  # tasks without an owner share one fairness count


def client_key(api_key: str | None, address: str | None) -> str:
    """The API key when there is one (hashed: no secret lands in Redis), else the address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    return "ip:" + (address or "unknown")


async def take_token(resources: Resources, client: str) -> None:
    """Raise RateLimited when this client's bucket (RATE_LIMIT) is empty."""
    limit = resources.settings.rate_limit_per_s
    if limit is None:
        return
    rate_per_s, burst = limit
    take = resources.redis.register_script(_BUCKET_SCRIPT)
    key = f"{resources.keys.namespace}:bucket:{client}"
    wait_s = float(await take(keys=[key], args=[rate_per_s, burst]))
    if wait_s > 0:
        raise RateLimited(wait_s)


@dataclass(frozen=True, slots=True)
class Applicant:
    id: uuid.UUID
    queue: str
    owner: str | None


@dataclass(frozen=True, slots=True)
class Admission:
    """Per applicant, in order: its fairness level, or why it was refused."""

    levels: list[int]
    refusals: list[Overloaded | None]


async def admit(resources: Resources, applicants: Sequence[Applicant]) -> Admission:
    """Shed what is past QUEUE_MAX_PENDING and count the owners' recent tasks,
    in one round trip for the whole batch; raises a store error if Redis is down."""
    settings, redis, keys = resources.settings, resources.redis, resources.keys
    max_pending = settings.queue_max_pending
    fair = settings.fairness == "levels"
    queues = list(dict.fromkeys(a.queue for a in applicants)) if max_pending else []
    owners: dict[str, list[uuid.UUID]] = {}
    if fair:
        for applicant in applicants:
            owners.setdefault(applicant.owner or ANONYMOUS, []).append(applicant.id)
    if not queues and not owners:
        await redis.ping()  # the caller relies on admission to find Redis down
        return Admission([0] * len(applicants), [None] * len(applicants))
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcard(keys.ready(queue))
            pipe.zcard(keys.scheduled(queue))
        if owners:
            window = redis.register_script(_WINDOW_SCRIPT)
            await window(
                keys=[keys.owner_window(owner) for owner in owners],
                args=_window_args(settings.fairness_window_s, owners, _caps(resources, owners)),
                client=pipe,
            )
        replies = await pipe.execute()
    waiting = {q: int(replies[2 * i]) + int(replies[2 * i + 1]) for i, q in enumerate(queues)}
    counts = dict(zip(owners, replies[-1], strict=True)) if owners else {}
    return Admission(
        _levels(resources, applicants, counts), _refusals(applicants, waiting, max_pending)
    )


def _caps(resources: Resources, owners: dict[str, list[uuid.UUID]]) -> list[int]:
    settings = resources.settings
    last = settings.level_thresholds[-1]
    return [math.ceil(last * settings.fairness_weights.get(owner, 1.0)) + 1 for owner in owners]


def _window_args(
    window_s: float, owners: dict[str, list[uuid.UUID]], caps: list[int]
) -> list[str | float | int]:
    args: list[str | float | int] = [window_s]
    for cap, ids in zip(caps, owners.values(), strict=True):
        args += [cap, len(ids), *(str(task_id) for task_id in ids)]
    return args


def _levels(
    resources: Resources, applicants: Sequence[Applicant], counts: dict[str, int]
) -> list[int]:
    """Level from the owner's submissions before this one, divided by its weight."""
    if not counts:
        return [0] * len(applicants)
    settings = resources.settings
    seen = dict(counts)
    levels = []
    for applicant in applicants:
        owner = applicant.owner or ANONYMOUS
        weighted = math.floor(seen[owner] / settings.fairness_weights.get(owner, 1.0))
        levels.append(sum(1 for threshold in settings.level_thresholds if weighted >= threshold))
        seen[owner] += 1
    return levels


def _refusals(
    applicants: Sequence[Applicant], waiting: dict[str, int], max_pending: int
) -> list[Overloaded | None]:
    """Past QUEUE_MAX_PENDING, refuse; within a batch, admit up to the limit."""
    refusals: list[Overloaded | None] = []
    for applicant in applicants:
        count = waiting.get(applicant.queue)
        if count is not None and count >= max_pending:
            refusals.append(Overloaded(applicant.queue, count, max_pending))
            continue
        if count is not None:
            waiting[applicant.queue] = count + 1
        refusals.append(None)
    return refusals
