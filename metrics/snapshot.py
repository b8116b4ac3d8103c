"""What /metrics reports, read from the shared stores: every API process
answers the same numbers, and workers report through them (no port of their
own to scrape).

- counters and histograms: the Redis hash that writers add to (tasks/tally.py)
- queue depth and oldest ready age: the trigger-kept counts behind GET /queues
- workers: their heartbeat reports (tasks/presence.py)
- schedules and declared queues' dead letters: one small statement each (the
  dead letters from the trigger-kept counts too)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from app.lifespan import Resources
from schedules import repository as schedules_repository
from tasks import presence, repository, service, tally
from tasks.presence import WorkerReport
from tasks.schemas import QueueOut
from topics import repository as topics_repository


@dataclass(frozen=True)
class Schedules:
    enabled: int = 0
    disabled: int = 0
    overdue: int = 0


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int] = field(default_factory=dict)
    queues: list[QueueOut] = field(default_factory=list)
    workers: list[WorkerReport] = field(default_factory=list)
    schedules: Schedules = field(default_factory=Schedules)
    dead: dict[str, int] = field(default_factory=dict)  # topic queue -> dead letters


async def take(resources: Resources) -> Snapshot:
    """Everything at once: a handful of reads, whatever the number of tasks."""
    counts, queues, workers, (schedules, dead) = await asyncio.gather(
        tally.read(resources),
        service.queue_overview(resources=resources, owner=None),
        presence.live_workers(resources),
        _database_summaries(resources),
    )
    return Snapshot(counts, queues, workers, schedules, dead)


async def _database_summaries(resources: Resources) -> tuple[Schedules, dict[str, int]]:
    settings = resources.settings
    late_s = settings.schedule_misfire_grace_s + 4 * settings.schedule_interval_s
    async with repository.driver_connection(resources.engine) as conn:
        row: Any = await schedules_repository.summary(conn=conn, late_s=late_s)
        dead = await topics_repository.message_summaries(conn=conn)
    schedules = Schedules(row["enabled"], row["disabled"], row["overdue"])
    return schedules, {r["queue"]: int(r["dead"]) for r in dead}
