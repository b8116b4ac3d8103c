"""The rules of topics and queues as resources: what may be created, changed
and deleted, and what a queue's stats are."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.lifespan import Resources
from tasks import repository as tasks_repository
from tasks import service as tasks_service
from tasks.doorbell import Doorbell
from tasks.schemas import QueueOut
from topics import repository
from topics.exceptions import (
    InvalidReference,
    OwnDeadQueue,
    QueueExists,
    QueueNotFound,
    TopicExists,
    TopicInUse,
    TopicNotFound,
)
from topics.schemas import QueueCreate, QueuePatch, QueueResource, QueueStats, TopicOut

log = logging.getLogger("taskline.api")

DELETE_BATCH = 1_000


def _connect(resources: Resources) -> Any:
    return tasks_repository.driver_connection(resources.engine)


# Topics -------------------------------------------------------------------


async def create_topic(*, resources: Resources, topic_id: str) -> TopicOut:
    async with _connect(resources) as conn:
        if not await repository.insert_topic(conn=conn, topic_id=topic_id):
            raise TopicExists(topic_id)
        row = await repository.get_topic(conn=conn, topic_id=topic_id)
    return TopicOut.model_validate(dict(row))


async def get_topic(*, resources: Resources, topic_id: str) -> TopicOut:
    async with _connect(resources) as conn:
        row = await repository.get_topic(conn=conn, topic_id=topic_id)
    if row is None:
        raise TopicNotFound(topic_id)
    return TopicOut.model_validate(dict(row))


async def list_topics(
    *, resources: Resources, cursor: str | None, limit: int
) -> tuple[list[TopicOut], str | None]:
    async with _connect(resources) as conn:
        rows = await repository.list_topics(conn=conn, after=cursor, limit=limit + 1)
    items = [TopicOut.model_validate(dict(row)) for row in rows[:limit]]
    return items, (items[-1].id if len(rows) > limit else None)


async def delete_topic(*, resources: Resources, topic_id: str, force: bool) -> None:
    """Refused while queues subscribe, unless `force`: then they are detached
    (they keep their messages and stop receiving new ones)."""
    try:
        async with _connect(resources) as conn:
            deleted = await repository.delete_topic(conn=conn, topic_id=topic_id, detach=force)
    except asyncpg.ForeignKeyViolationError:
        raise TopicInUse(topic_id) from None
    if not deleted:
        raise TopicNotFound(topic_id)


# Queues -------------------------------------------------------------------


async def create_queue(*, resources: Resources, body: QueueCreate) -> QueueResource:
    values = body.model_dump()
    async with _connect(resources) as conn:
        await _check_references(conn, body.id, values)
        try:
            row = await repository.insert_queue(conn=conn, values=values)
        except asyncpg.ForeignKeyViolationError as error:
            raise _reference_error(error, values) from None
        if row is None:
            existing = await repository.get_queue(conn=conn, queue_id=body.id)
            deleting = existing is not None and existing["deleting_at"] is not None
            raise QueueExists(body.id, deleting=deleting)
    try:  # so that GET /queues lists it before it has had a message
        await Doorbell(resources).add_queues([body.id])
    except Exception as error:
        log.warning("queue %s created; could not name it in Redis: %s", body.id, error)
    return QueueResource.model_validate(dict(row))


async def get_queue(*, resources: Resources, queue_id: str) -> QueueResource:
    async with _connect(resources) as conn:
        row = await _live_queue(conn, queue_id)
    return QueueResource.model_validate(dict(row))


async def update_queue(*, resources: Resources, queue_id: str, body: QueuePatch) -> QueueResource:
    """Only the fields given change. A new message_max_deliveries or retention
    applies to messages that arrive after it; the rest at once."""
    changes = body.model_dump(include=body.model_fields_set)
    async with _connect(resources) as conn:
        await _live_queue(conn, queue_id)
        await _check_references(conn, queue_id, changes)
        try:
            row = await repository.update_queue(conn=conn, queue_id=queue_id, changes=changes)
        except asyncpg.ForeignKeyViolationError as error:
            raise _reference_error(error, changes) from None
    if row is None:
        raise QueueNotFound(queue_id)
    return QueueResource.model_validate(dict(row))


async def delete_queue(*, resources: Resources, queue_id: str, batch: int = DELETE_BATCH) -> int:
    """The queue disappears for the API at once (it is marked), then its
    messages are deleted `batch` at a time, then the queue itself. Interrupted,
    a second DELETE finishes the job. Returns how many messages were deleted."""
    deleted = 0
    async with _connect(resources) as conn:
        if not await repository.mark_queue_deleting(conn=conn, queue_id=queue_id):
            raise QueueNotFound(queue_id)
        while count := await repository.delete_queue_messages(
            conn=conn, queue_id=queue_id, limit=batch
        ):
            deleted += count
        await repository.delete_queue_row(conn=conn, queue_id=queue_id)
    log.info("deleted queue %s and its %d message(s)", queue_id, deleted)
    return deleted


async def queue_stats(*, resources: Resources, queue_id: str) -> QueueStats:
    async with _connect(resources) as conn:
        row = await repository.message_stats(conn=conn, queue_id=queue_id)
    if row is None:
        raise QueueNotFound(queue_id)
    overview = await tasks_service.queue_overview(resources=resources, owner=None)
    counts = next((queue for queue in overview if queue.name == queue_id), None)
    counts = counts or QueueOut(
        name=queue_id, pending=0, ready=0, scheduled=0, processing=0,
        oldest_ready_age_s=None, priorities=[],
    )  # fmt: skip
    return QueueStats(
        **counts.model_dump(),
        id=queue_id,
        num_undelivered_messages=counts.pending,
        num_leased_messages=counts.processing,
        oldest_unacked_message_age_seconds=row["oldest_unacked_age_s"],
        num_dead_messages=row["dead"],
    )


async def _live_queue(conn: Any, queue_id: str) -> Any:
    row = await repository.get_queue(conn=conn, queue_id=queue_id)
    if row is None or row["deleting_at"] is not None:
        raise QueueNotFound(queue_id)
    return row


async def _check_references(conn: Any, queue_id: str, values: dict[str, Any]) -> None:
    """A queue's topic must exist; its dead queue must exist and be another queue."""
    topic_id = values.get("topic_id")
    if topic_id is not None and await repository.get_topic(conn=conn, topic_id=topic_id) is None:
        raise InvalidReference(f"topic_id: no topic {topic_id!r}")
    dead_queue_id = values.get("dead_queue_id")
    if dead_queue_id is None:
        return
    if dead_queue_id == queue_id:
        raise OwnDeadQueue()
    dead = await repository.get_queue(conn=conn, queue_id=dead_queue_id)
    if dead is None or dead["deleting_at"] is not None:
        raise InvalidReference(f"dead_queue_id: no queue {dead_queue_id!r}")


def _reference_error(error: Any, values: dict[str, Any]) -> InvalidReference:
    """A referenced row deleted between the check and the write."""
    if "topic" in str(getattr(error, "constraint_name", "")):
        return InvalidReference(f"topic_id: no topic {values.get('topic_id')!r}")
    return InvalidReference(f"dead_queue_id: no queue {values.get('dead_queue_id')!r}")


# Declared queues' messages, for /metrics and the dashboard ---------------------


@dataclass(frozen=True, slots=True)
class QueueMessages:
    """A declared queue's messages, as GET /queues/{id}/stats counts them."""

    queue: str
    undelivered: int  # pending: ready, or due later (a nack's delay)
    leased: int  # processing: held by a consumer or a worker
    dead: int
    oldest_unacked_age_s: float | None


def queue_messages(summaries: Sequence[Any], counts: Sequence[QueueOut]) -> list[QueueMessages]:
    """Each declared queue (a row of repository.message_summaries) with its
    counts from tasks.service.queue_overview (the trigger-kept counts)."""
    by_name = {queue.name: queue for queue in counts}
    found = []
    for row in summaries:
        queue = by_name.get(row["queue"])
        found.append(
            QueueMessages(
                queue=row["queue"],
                undelivered=queue.pending if queue else 0,
                leased=queue.processing if queue else 0,
                dead=int(row["dead"]),
                oldest_unacked_age_s=row["oldest_unacked_age_s"],
            )
        )
    return found
