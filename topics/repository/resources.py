"""SQL of the resources: topics and queues."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

_TOPIC_COLUMNS = """t.id, t.created_at,
       array(SELECT q.id FROM queues q
              WHERE q.topic_id = t.id AND q.deleting_at IS NULL ORDER BY q.id) AS queues"""


async def insert_topic(*, conn: Any, topic_id: str) -> bool:
    """False when the topic exists already."""
    row = await conn.fetchrow(
        "INSERT INTO topics (id) VALUES ($1) ON CONFLICT (id) DO NOTHING RETURNING id", topic_id
    )
    return row is not None


async def get_topic(*, conn: Any, topic_id: str) -> Any:
    return await conn.fetchrow(f"SELECT {_TOPIC_COLUMNS} FROM topics t WHERE t.id = $1", topic_id)


async def list_topics(*, conn: Any, after: str | None, limit: int) -> Sequence[Any]:
    """In id order; `after` is the keyset cursor."""
    return list(
        await conn.fetch(
            f"SELECT {_TOPIC_COLUMNS} FROM topics t"
            " WHERE $1::text IS NULL OR t.id > $1 ORDER BY t.id LIMIT $2",
            after,
            limit,
        )
    )


async def delete_topic(*, conn: Any, topic_id: str, detach: bool) -> bool:
    """Delete a topic. Without `detach`, a subscribed queue makes the foreign key
    refuse it (asyncpg's ForeignKeyViolationError); with it, its queues are
    detached first, in the same transaction."""
    async with conn.transaction():
        if detach:
            await conn.execute(
                "UPDATE queues SET topic_id = NULL, updated_at = now() WHERE topic_id = $1",
                topic_id,
            )
        result = await conn.execute("DELETE FROM topics WHERE id = $1", topic_id)
    return bool(result == "DELETE 1")


_INSERT_QUEUE = """
    INSERT INTO queues (id, topic_id, ack_deadline_seconds, message_retention_seconds,
                        message_max_deliveries, dead_queue_id, message_filters)
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
        ON CONFLICT (id) DO NOTHING
 RETURNING *
"""


async def insert_queue(*, conn: Any, values: dict[str, Any]) -> Any:
    """The new row, or None when the id is taken. An unknown topic or dead queue
    raises asyncpg's ForeignKeyViolationError."""
    return await conn.fetchrow(
        _INSERT_QUEUE,
        values["id"],
        values["topic_id"],
        values["ack_deadline_seconds"],
        values["message_retention_seconds"],
        values["message_max_deliveries"],
        values["dead_queue_id"],
        json.dumps(values["message_filters"]),
    )


async def get_queue(*, conn: Any, queue_id: str) -> Any:
    """The queue, also while it is being deleted (see `deleting_at`)."""
    return await conn.fetchrow("SELECT * FROM queues WHERE id = $1", queue_id)


# A flag per optional field says whether it was given, so null can clear it.
_UPDATE_QUEUE = """
    UPDATE queues SET
           topic_id = CASE WHEN $2 THEN $3 ELSE topic_id END,
           ack_deadline_seconds = coalesce($4, ack_deadline_seconds),
           message_retention_seconds = coalesce($5, message_retention_seconds),
           message_max_deliveries = CASE WHEN $6 THEN $7 ELSE message_max_deliveries END,
           dead_queue_id = CASE WHEN $8 THEN $9 ELSE dead_queue_id END,
           message_filters = coalesce($10::jsonb, message_filters),
           updated_at = now()
     WHERE id = $1 AND deleting_at IS NULL
 RETURNING *
"""


async def update_queue(*, conn: Any, queue_id: str, changes: dict[str, Any]) -> Any:
    """Change the fields in `changes`; None when the queue is not there."""
    filters = changes.get("message_filters")
    return await conn.fetchrow(
        _UPDATE_QUEUE,
        queue_id,
        "topic_id" in changes,
        changes.get("topic_id"),
        changes.get("ack_deadline_seconds"),
        changes.get("message_retention_seconds"),
        "message_max_deliveries" in changes,
        changes.get("message_max_deliveries"),
        "dead_queue_id" in changes,
        changes.get("dead_queue_id"),
        None if "message_filters" not in changes else json.dumps(filters or {}),
    )


async def mark_queue_deleting(*, conn: Any, queue_id: str) -> bool:
    """The queue is gone for the API from now on; True if it exists (being deleted or not)."""
    row = await conn.fetchrow(
        "UPDATE queues SET deleting_at = coalesce(deleting_at, now()) WHERE id = $1 RETURNING id",
        queue_id,
    )
    return row is not None


_DELETE_MESSAGES = """
    DELETE FROM tasks WHERE id IN (
        SELECT id FROM tasks WHERE queue = $1 AND kind = 'message' LIMIT $2)
"""


async def delete_queue_messages(*, conn: Any, queue_id: str, limit: int) -> int:
    """Delete up to `limit` of a queue's messages, whatever their status."""
    result = await conn.execute(_DELETE_MESSAGES, queue_id, limit)
    return int(result.split()[-1])


async def delete_queue_row(*, conn: Any, queue_id: str) -> None:
    """Queues that named it as their dead queue lose it (ON DELETE SET NULL)."""
    await conn.execute("DELETE FROM queues WHERE id = $1", queue_id)
