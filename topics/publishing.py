"""Publishing: a message becomes one task of kind `message` in every subscribed
queue whose filters it matches, all of them in one transaction, then rung and
announced (`created` events) in one round trip, as the tasks' intake does. A
message belongs to the owner of the key that published it, like a task."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from app.ids import uuid7
from app.lifespan import Resources
from tasks import events
from tasks import repository as tasks_repository
from tasks.doorbell import Doorbell
from tasks.submissions import NewTask
from topics import repository
from topics.exceptions import QueueNotFound, TopicNotFound
from topics.message_schemas import MessageIn, PublishedMessage
from topics.models import MESSAGE_KIND

log = logging.getLogger("taskline.api")

DEFAULT_MAX_DELIVERIES = 100  # the ceiling of a task's max_attempts
MESSAGE_PRIORITY = 5


def matches(filters: dict[str, list[str]], attributes: dict[str, str]) -> bool:
    """For every attribute the filter lists, the message's value is one it accepts."""
    return all(attributes.get(name) in accepted for name, accepted in filters.items())


def new_message(
    queue: Any, message: MessageIn, origin: str, now: datetime, owner: str | None = None
) -> NewTask:
    """The task that carries `message` in `queue` (a row of lock_queue)."""
    return NewTask(
        id=uuid7(),
        kind=MESSAGE_KIND,
        message=origin,
        payload={"data": message.data, "attributes": message.attributes},
        max_attempts=queue["message_max_deliveries"] or DEFAULT_MAX_DELIVERIES,
        timeout_seconds=float(queue["ack_deadline_seconds"]),
        expires_at=now + timedelta(seconds=queue["message_retention_seconds"]),
        queue=queue["id"],
        priority=MESSAGE_PRIORITY,
        owner=owner,
    )


async def publish(
    *,
    resources: Resources,
    topic_id: str,
    messages: Sequence[MessageIn],
    owner: str | None = None,
) -> list[PublishedMessage]:
    """Fan out to the subscribed queues whose filters match. The queues are
    locked until the insert commits, so none is deleted half-way; a message
    that matches no queue is dropped."""
    async with tasks_repository.driver_connection(resources.engine) as conn, conn.transaction():
        queues = await repository.lock_topic_queues(conn=conn, topic_id=topic_id)
        if queues is None:
            raise TopicNotFound(topic_id)
        now = datetime.now(UTC)
        planned = [
            (index, new_message(queue, message, f"published to topic {topic_id}", now, owner))
            for index, message in enumerate(messages)
            for queue in queues
            if matches(queue["message_filters"], message.attributes)
        ]
        rows = await _insert(conn, [task for _, task in planned])
    await ring(resources, rows)
    return [PublishedMessage(id=task.id, queue=task.queue, index=index) for index, task in planned]


async def put(
    *,
    resources: Resources,
    queue_id: str,
    messages: Sequence[MessageIn],
    owner: str | None = None,
) -> list[PublishedMessage]:
    """Messages straight onto one queue (its filters do not apply)."""
    async with tasks_repository.driver_connection(resources.engine) as conn, conn.transaction():
        queue = await repository.lock_queue(conn=conn, queue_id=queue_id)
        if queue is None:
            raise QueueNotFound(queue_id)
        now = datetime.now(UTC)
        tasks = [new_message(queue, message, f"put on queue {queue_id}", now, owner)
                 for message in messages]  # fmt: skip
        rows = await _insert(conn, tasks)
    await ring(resources, rows)
    return [PublishedMessage(id=task.id, queue=queue_id, index=i) for i, task in enumerate(tasks)]


async def _insert(conn: Any, tasks: list[NewTask]) -> list[Any]:
    """The tasks' own batched insert: one statement for all of them."""
    return await tasks_repository.insert_tasks(conn=conn, tasks=tasks) if tasks else []


async def ring(resources: Resources, rows: list[Any]) -> None:
    """Ring the new messages and announce them: one pipeline for the request."""
    if resources.settings.fault_skip_push or not rows:
        return
    created = events.of_created(rows)
    try:
        await Doorbell(resources).send(
            ready=[tasks_repository.bell_of_row(row) for row in rows],
            also=[events.stage(resources, created)],
        )
    except Exception as error:
        # Committed is accepted: the reconcile rings them.
        log.warning("%d message(s) committed but not rung (%s); reconcile will", len(rows), error)
