"""HTTP consumers as /metrics and the dashboard see them: when each last leased.

A consumer is the `consumer` name of its lease requests, per queue. Every
lease writes two scores in Redis, in the pipeline that announces its events:
when a lease of the consumer last answered (`polled`: it is alive, even on an
empty queue) and when one last took messages (`leased`). So every API process
reports the same consumers, whichever process they lease through.

Bounded, since consumer names are the clients' to choose: a consumer unseen
for CONSUMER_KEEP_S drops out, and only the MAX_CONSUMERS seen last are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.lifespan import Resources

CONSUMER_KEEP_S = 24 * 3600
MAX_CONSUMERS = 1000
_SEPARATOR = " "  # in neither a queue id nor a consumer name (both visible ASCII)


@dataclass(frozen=True, slots=True)
class Consumer:
    queue: str
    name: str
    polled_at_s: float  # Unix seconds
    leased_at_s: float | None  # None: none of its leases took a message lately


def stage_lease(
    resources: Resources, queue: str, consumer: str, *, took: bool, now_s: float | None = None
) -> Callable[[Any], None]:
    """A step for a pipeline the lease sends anyway (tasks.doorbell.Doorbell.send)."""
    now_s = time.time() if now_s is None else now_s
    member = f"{queue}{_SEPARATOR}{consumer}"
    keys = [resources.keys.consumers_polled] + ([resources.keys.consumers_leased] if took else [])

    def add(pipe: Any) -> None:
        for key in keys:
            pipe.zadd(key, {member: now_s})
            pipe.zremrangebyscore(key, "-inf", now_s - CONSUMER_KEEP_S)
            pipe.zremrangebyrank(key, 0, -MAX_CONSUMERS - 1)

    return add


async def seen(resources: Resources, *, now_s: float | None = None) -> list[Consumer]:
    """The consumers seen within CONSUMER_KEEP_S, by queue and name: one round trip."""
    since_s = (time.time() if now_s is None else now_s) - CONSUMER_KEEP_S
    async with resources.redis.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(resources.keys.consumers_polled, since_s, "+inf", withscores=True)
        pipe.zrangebyscore(resources.keys.consumers_leased, since_s, "+inf", withscores=True)
        polled, leased = await pipe.execute()
    leased_at = {str(member): float(score) for member, score in leased}
    found = []
    for member, score in polled:
        queue, _, name = str(member).partition(_SEPARATOR)
        found.append(Consumer(queue, name, float(score), leased_at.get(str(member))))
    return sorted(found, key=lambda c: (c.queue, c.name))
