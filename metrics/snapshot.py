"""What /metrics reports, read from the shared stores: every API process
answers the same numbers, and workers report through them (no port of their
own to scrape).

- counters and histograms: the Redis hash that writers add to (tasks/tally.py)
- queue depth and oldest ready age: the trigger-kept counts behind GET /queues
- workers: their heartbeat reports (tasks/presence.py)
- HTTP consumers: their last leases (topics/presence.py)
- schedules and declared queues' messages: one small statement each (the
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
from topics import presence as consumers_presence
from topics import repository as topics_repository
from topics import service as topics_service
from topics.presence import Consumer
from topics.service import QueueMessages


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
    messages: list[QueueMessages] = field(default_factory=list)  # declared queues
    consumers: list[Consumer] = field(default_factory=list)


async def take(resources: Resources) -> Snapshot:
    """Everything at once: a handful of reads, whatever the number of tasks."""
    counts, queues, workers, consumers, (schedules, summaries) = await asyncio.gather(
        tally.read(resources),
        service.queue_overview(resources=resources, owner=None),
        presence.live_workers(resources),
        consumers_presence.seen(resources),
        _database_summaries(resources),
    )
    messages = topics_service.queue_messages(summaries, queues)
    return Snapshot(counts, queues, workers, schedules, messages, consumers)


async def _database_summaries(resources: Resources) -> tuple[Schedules, list[Any]]:
    settings = resources.settings
    late_s = settings.schedule_misfire_grace_s + 4 * settings.schedule_interval_s
    async with repository.driver_connection(resources.engine) as conn:
        row: Any = await schedules_repository.summary(conn=conn, late_s=late_s)
        summaries = await topics_repository.message_summaries(conn=conn)
    return Schedules(row["enabled"], row["disabled"], row["overdue"]), summaries
