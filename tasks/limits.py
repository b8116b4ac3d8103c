"""Admission controls, shared by every API process through Redis: a token bucket
per client (RATE_LIMIT), load shedding on the tasks waiting in a queue
(QUEUE_MAX_PENDING) and the owners' fairness levels (FAIRNESS=levels).

The intake decides a whole batch of POSTs with one atomic script, in one round
trip and with no PostgreSQL work. In a Redis Cluster the buckets and windows
share a slot and the script runs there; the queues' counts, on their own
slots, are read in a round trip before (only with QUEUE_MAX_PENDING).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.lifespan import Resources
from tasks.exceptions import Overloaded, RateLimited

# In arrival order, each request: takes a token from its client's bucket
# (refilled on Redis's clock), else is refused; then takes a place in its
# queue's backlog, else is refused; then is counted in its owner's sliding
# window, which answers how many tasks the owner sent before it. Refused
# requests take nothing. Atomic, so API processes never read a count and
# write it back. Past the last fairness threshold the level stops growing, so
# a window keeps no more entries than its cap.
#
# KEYS: per queue its ready and scheduled sets (none in a cluster), then
# buckets, then windows. ARGV: queues, buckets, windows, rate, burst,
# max_pending, window_s, a cap per window, (in a cluster: each queue's waiting
# count), then per request: queue, bucket and window numbers (0: none), task id.
_ADMIT_HEAD = """
local nq, nb, nw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rate, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_pending, window = tonumber(ARGV[6]), tonumber(ARGV[7])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local waiting, tokens, counts = {}, {}, {}
"""
# Single Redis: the script counts each queue's waiting ids itself.
_COUNT_QUEUES = """
local kq, first = 2 * nq, 8 + nw
for q = 1, nq do
  waiting[q] = redis.call('ZCARD', KEYS[2 * q - 1]) + redis.call('ZCARD', KEYS[2 * q])
end
"""
# Cluster: the queues' sets live on other slots; their counts come as arguments.
_GIVEN_COUNTS = """
local kq, first = 0, 8 + nw + nq
for q = 1, nq do
  waiting[q] = tonumber(ARGV[7 + nw + q])
end
"""
_ADMIT_BODY = """
for b = 1, nb do
  local state = redis.call('HMGET', KEYS[kq + b], 'tokens', 'at')
  local at = tonumber(state[2]) or now
  tokens[b] = math.min(burst, (tonumber(state[1]) or burst) + math.max(0, now - at) * rate)
end
for w = 1, nw do
  redis.call('ZREMRANGEBYSCORE', KEYS[kq + nb + w], '-inf', now - window)
  counts[w] = redis.call('ZCARD', KEYS[kq + nb + w])
end
local out = {}
for at = first, #ARGV, 4 do
  local q, b, w = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  if b > 0 and tokens[b] < 1 then
    out[#out + 1] = 1
    out[#out + 1] = tostring((1 - tokens[b]) / rate)
  elseif q > 0 and waiting[q] >= max_pending then
    out[#out + 1] = 2
    out[#out + 1] = tostring(waiting[q])
  else
    if b > 0 then tokens[b] = tokens[b] - 1 end
    if q > 0 then waiting[q] = waiting[q] + 1 end
    local before = 0
    if w > 0 then
      before = counts[w]
      counts[w] = before + 1
      redis.call('ZADD', KEYS[kq + nb + w], now, ARGV[at + 3])
    end
    out[#out + 1] = 0
    out[#out + 1] = tostring(before)
  end
end
for b = 1, nb do
  redis.call('HSET', KEYS[kq + b], 'tokens', tostring(tokens[b]), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[kq + b], math.ceil(burst / rate * 1000) + 1000)
end
for w = 1, nw do
  redis.call('ZREMRANGEBYRANK', KEYS[kq + nb + w], 0, -(tonumber(ARGV[7 + w]) + 1))
  redis.call('PEXPIRE', KEYS[kq + nb + w], math.ceil(window * 1000))
end
return out
"""
_ADMIT = _ADMIT_HEAD + _COUNT_QUEUES + _ADMIT_BODY
# Buckets and windows share the `{a}` hash tag (app/redis.py): one slot.
_ADMIT_COUNTED = _ADMIT_HEAD + _GIVEN_COUNTS + _ADMIT_BODY

ANONYMOUS = "-"  # tasks without an owner share one fairness count
_ADMITTED, _RATE_LIMITED = 0, 1


def client_key(api_key: str | None, address: str | None) -> str:
    """The API key when there is one (hashed: no secret lands in Redis), else the address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    return "ip:" + (address or "unknown")


def owner_key(owner: str) -> str:
    """With API keys, a tenant's keys share one bucket (hashed: any length, any characters)."""
    return "owner:" + hashlib.sha256(owner.encode()).hexdigest()[:32]


# Once a queue is found full, it is taken as full for this long without
# asking Redis again: a flood is refused cheaply, at the cost of refusing for
# at most this long after the workers have made room.
FULL_QUEUE_HOLD_S = 0.05


class KnownRefusals:
    """Refusals that hold for a while, so a flood is answered without a round
    trip: a client whose bucket Redis found empty (a bucket only refills with
    time, and other processes only take from it, so until then Redis would
    refuse too), and a queue found full (for FULL_QUEUE_HOLD_S). Per process,
    bounded, and only ever a shortcut."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._until: dict[str, tuple[float, Overloaded | None]] = {}
        self._max_entries = max_entries

    def refusal(self, client: str | None, queue: str) -> RateLimited | Overloaded | None:
        now = time.monotonic()
        if client is not None:
            found = self._until.get("client:" + client)
            if found is not None and found[0] > now:
                return RateLimited(found[0] - now)
        found = self._until.get("queue:" + queue)
        if found is not None and found[0] > now and found[1] is not None:
            return Overloaded(queue, found[1].waiting, found[1].limit)  # a fresh exception
        return None

    def note(self, applicant: Applicant, refusal: RateLimited | Overloaded) -> None:
        if len(self._until) >= self._max_entries:
            self._until.clear()
        now = time.monotonic()
        if isinstance(refusal, RateLimited) and applicant.client is not None:
            self._until["client:" + applicant.client] = (now + (refusal.retry_after_s or 0), None)
        elif isinstance(refusal, Overloaded):
            self._until["queue:" + applicant.queue] = (now + FULL_QUEUE_HOLD_S, refusal)


@dataclass(frozen=True, slots=True)
class Applicant:
    id: uuid.UUID
    queue: str
    owner: str | None
    client: str | None  # the rate-limit bucket; None: not limited


Decision = int | RateLimited | Overloaded  # a fairness level, or a refusal


class _Numbering:
    """Gives each distinct name a number from 1, in first-seen order."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def __call__(self, name: str | None) -> int:
        if name is None:
            return 0
        return self.numbers.setdefault(name, len(self.numbers) + 1)


def active(settings: Settings) -> bool:
    """Whether admission has anything to decide: a rate limit, a queue cap or
    fairness levels is set."""
    return bool(
        settings.rate_limit_per_s or settings.queue_max_pending or settings.fairness == "levels"
    )


async def admit(resources: Resources, applicants: Sequence[Applicant]) -> list[Decision]:
    """Decide a batch of POSTs in one round trip (two in a cluster with
    QUEUE_MAX_PENDING): a fairness level for each one admitted, the refusal for
    the others. Raises a store error if Redis is down."""
    settings, redis = resources.settings, resources.redis
    rate = settings.rate_limit_per_s
    fair = settings.fairness == "levels"
    if not active(settings):
        await redis.ping()  # the intake relies on admission to find Redis down
        return [0] * len(applicants)
    queues, buckets, windows = _Numbering(), _Numbering(), _Numbering()
    calls = [
        (
            queues(a.queue if settings.queue_max_pending else None),
            buckets(a.client if rate else None),
            windows((a.owner or ANONYMOUS) if fair else None),
            str(a.id),
        )
        for a in applicants
    ]
    reply = await _decide(resources, queues, buckets, windows, calls)
    return [
        _decision(resources, applicant, int(reply[2 * i]), reply[2 * i + 1])
        for i, applicant in enumerate(applicants)
    ]


async def _decide(
    resources: Resources,
    queues: _Numbering,
    buckets: _Numbering,
    windows: _Numbering,
    calls: list[tuple[int, int, int, str]],
) -> Any:
    """Run the admission script. In a cluster the queues' sets live on other
    slots than the buckets and windows (`{a}`): their counts are read first, in
    a round trip of their own, and handed to the script."""
    settings, keys = resources.settings, resources.keys
    counted = settings.redis_cluster
    waiting = await _waiting(resources, list(queues.numbers)) if counted else []
    sets = (
        [] if counted else [k for q in queues.numbers for k in (keys.ready(q), keys.scheduled(q))]
    )
    script = resources.redis.register_script(_ADMIT_COUNTED if counted else _ADMIT)  # EVALSHA
    return await script(
        keys=[
            *sets,
            *(keys.bucket(client) for client in buckets.numbers),
            *(keys.owner_window(owner) for owner in windows.numbers),
        ],
        args=[
            len(queues.numbers), len(buckets.numbers), len(windows.numbers),
            *(settings.rate_limit_per_s or (1.0, 1.0)), settings.queue_max_pending,
            settings.fairness_window_s,
            *(_window_cap(resources, owner) for owner in windows.numbers),
            *waiting,
            *(value for call in calls for value in call),
        ],
    )  # fmt: skip


def _decision(resources: Resources, applicant: Applicant, code: int, value: str) -> Decision:
    settings = resources.settings
    if code == _RATE_LIMITED:
        return RateLimited(float(value))
    if code != _ADMITTED:
        return Overloaded(applicant.queue, int(value), settings.queue_max_pending)
    owner = applicant.owner or ANONYMOUS
    weighted = math.floor(int(value) / settings.fairness_weights.get(owner, 1.0))
    return sum(1 for threshold in settings.level_thresholds if weighted >= threshold)


def _window_cap(resources: Resources, owner: str) -> int:
    """Entries worth keeping: past the last threshold the level stops growing."""
    settings = resources.settings
    weight = settings.fairness_weights.get(owner, 1.0)
    return math.ceil(settings.level_thresholds[-1] * weight) + 1


async def _waiting(resources: Resources, queues: list[str]) -> list[int]:
    """Each queue's ready plus scheduled ids, in one pipeline."""
    if not queues:
        return []
    keys = resources.keys
    async with resources.redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcard(keys.ready(queue))
            pipe.zcard(keys.scheduled(queue))
        sizes = await pipe.execute()
    return [
        int(ready) + int(scheduled)
        for ready, scheduled in zip(sizes[::2], sizes[1::2], strict=True)
    ]
