"""Admission controls, shared by every API process through Redis: a token bucket
per client and load shedding on the number of waiting tasks. Both cost one
round trip and no PostgreSQL work."""

from __future__ import annotations

import hashlib

from app.lifespan import Resources
from tasks import doorbell
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


async def shed_load(resources: Resources) -> None:
    """Raise Overloaded when QUEUE_MAX_PENDING tasks already wait for a worker."""
    limit = resources.settings.queue_max_pending
    if limit:
        waiting = await doorbell.backlog(resources.redis, resources.keys)
        if waiting >= limit:
            raise Overloaded(waiting, limit)
