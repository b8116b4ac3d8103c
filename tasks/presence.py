"""Which workers are alive, and how busy: each one's report in Redis.

A worker writes its report from its heartbeat loop (every lease/3): a key of
its own that expires after `ttl_s` unless renewed, and its id in a sorted set
scored by the time of the report, so a reader finds the live ones with one
range read and one MGET, however many workers came and went. A worker that
stops deletes both; one that dies drops out when its key expires.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from app.lifespan import Resources

MAX_WORKERS = 1000  # listed at most


@dataclass(frozen=True)
class WorkerReport:
    id: str
    host: str
    pid: int
    queues: list[str]
    slots_busy: int
    slots_total: int
    started_at_s: float
    heartbeat_at_s: float = 0.0

    @property
    def heartbeat_age_s(self) -> float:
        return max(0.0, time.time() - self.heartbeat_at_s)


async def report(resources: Resources, worker: WorkerReport, *, ttl_s: float) -> None:
    """Write the report (with the current time) and forget workers long gone."""
    now_s = time.time()
    body = json.dumps({**asdict(worker), "heartbeat_at_s": now_s}, separators=(",", ":"))
    keys = resources.keys
    async with resources.redis.pipeline(transaction=False) as pipe:
        pipe.set(keys.worker(worker.id), body, px=max(1, int(ttl_s * 1000)))
        pipe.zadd(keys.workers, {worker.id: now_s})
        pipe.zremrangebyscore(keys.workers, "-inf", now_s - ttl_s)
        await pipe.execute()


async def withdraw(resources: Resources, worker_id: str) -> None:
    keys = resources.keys
    async with resources.redis.pipeline(transaction=False) as pipe:
        pipe.delete(keys.worker(worker_id))
        pipe.zrem(keys.workers, worker_id)
        await pipe.execute()


async def live_workers(resources: Resources) -> list[WorkerReport]:
    """The workers whose report has not expired, by id."""
    keys = resources.keys
    ids = await resources.redis.zrange(keys.workers, 0, MAX_WORKERS - 1)
    if not ids:
        return []
    bodies = await resources.redis.mget([keys.worker(str(worker_id)) for worker_id in ids])
    found = [_parsed(body) for body in bodies if body]
    return sorted((w for w in found if w is not None), key=lambda w: w.id)


def _parsed(body: Any) -> WorkerReport | None:
    try:
        return WorkerReport(**json.loads(body))
    except (TypeError, ValueError):
        return None
