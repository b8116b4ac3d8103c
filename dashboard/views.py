"""What each page shows, read through the services and repositories the API
uses; no SQL and no Redis command of its own."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.lifespan import Resources
from schedules import service as schedules_service
from tasks import presence, repository, service, tally
from tasks.models import Task, TaskStatus
from tasks.presence import WorkerReport
from tasks.schemas import QueueOut
from topics import presence as topics_presence
from topics import repository as topics_repository
from topics import service as topics_service
from topics.presence import Consumer

CHART_MINUTES = 15
FAILED_WINDOW_MINUTES = 60
PAGE_SIZE = 50


@dataclass(frozen=True)
class QueueRow:
    queue: QueueOut
    failed_last_hour: int


async def overview(resources: Resources) -> list[QueueRow]:
    """Per queue its counts, and its failures in the last hour (the minute counters)."""
    queues = await service.queue_overview(resources=resources, owner=None)
    failed: Counter[str] = Counter()
    for _, counts in await tally.per_minute(resources, minutes=FAILED_WINDOW_MINUTES):
        for field, n in counts.items():
            event, _, queue = field.partition("|")
            if event == "failed":
                failed[queue] += n
    return [QueueRow(queue, failed[queue.name]) for queue in queues]


async def throughput(resources: Resources) -> dict[str, Any]:
    """Events per minute over the last CHART_MINUTES minutes, all queues together."""
    minutes = await tally.per_minute(resources, minutes=CHART_MINUTES)
    series: dict[str, list[int]] = {"created": [], "completed": [], "failed": []}
    for _, counts in minutes:
        per_event: Counter[str] = Counter()
        for field, n in counts.items():
            per_event[field.partition("|")[0]] += n
        for event, values in series.items():
            values.append(per_event[event])
    return {"minutes": [start for start, _ in minutes], "now": time.time(), "series": series}


@dataclass(frozen=True)
class Filters:
    status: TaskStatus | None = None
    kind: str | None = None
    queue: str | None = None
    owner: str | None = None

    def query(self) -> dict[str, str]:
        """As query parameters (for links and the event stream)."""
        values = {"status": self.status.value if self.status else None, "kind": self.kind,
                  "queue": self.queue, "owner": self.owner}  # fmt: skip
        return {name: value for name, value in values.items() if value}


async def task_page(
    session: AsyncSession, filters: Filters, cursor: str | None, limit: int = PAGE_SIZE
) -> tuple[list[Task], str | None]:
    items, next_cursor = await service.list_tasks(
        session=session, status=filters.status, kind=filters.kind, cursor=cursor,
        limit=limit, queue=filters.queue, owner=filters.owner,
    )  # fmt: skip
    return list(items), next_cursor


async def workers(resources: Resources) -> list[WorkerReport]:
    return await presence.live_workers(resources)


async def schedules(resources: Resources, cursor: str | None) -> tuple[list[Any], str | None]:
    return await schedules_service.list_schedules(
        resources=resources, cursor=cursor, limit=PAGE_SIZE
    )


@dataclass(frozen=True)
class ConsumerRow:
    queue: str
    name: str
    leased_now: int  # messages it holds now (PostgreSQL)
    last_lease_at: datetime | float | None  # when it last took messages
    last_poll_at: float | None  # when a lease of its last answered (Redis)


async def topics(resources: Resources, cursor: str | None) -> dict[str, Any]:
    """Topics with their queues, every declared queue with its messages, and
    the HTTP consumers: seen lately (Redis) or holding leases now (PostgreSQL)."""
    topic_items, next_cursor = await topics_service.list_topics(
        resources=resources, cursor=cursor, limit=PAGE_SIZE
    )
    async with repository.driver_connection(resources.engine) as conn:
        summaries = await topics_repository.message_summaries(conn=conn)
        leasing = await topics_repository.leasing_consumers(
            conn=conn, limit=topics_repository.MAX_SUMMARIES
        )
    counts = await service.queue_overview(resources=resources, owner=None)
    queues = topics_service.queue_messages(summaries, counts)
    return {
        "topics": topic_items, "next_cursor": next_cursor, "queues": queues,
        "consumers": _consumers(await topics_presence.seen(resources), leasing),
    }  # fmt: skip


def _consumers(seen: list[Consumer], leasing: list[Any]) -> list[ConsumerRow]:
    rows = {
        (c.queue, c.name): ConsumerRow(c.queue, c.name, 0, c.leased_at_s, c.polled_at_s)
        for c in seen
    }
    for row in leasing:
        key = (row["queue"], row["consumer"] or "?")
        known = rows.get(key)
        last_lease_at = known.last_lease_at if known else row["last_lease_at"]
        last_poll_at = known.last_poll_at if known else None
        rows[key] = ConsumerRow(*key, int(row["leased"]), last_lease_at, last_poll_at)
    return [rows[key] for key in sorted(rows)]
