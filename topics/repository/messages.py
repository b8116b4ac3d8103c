"""SQL of messages beyond the tasks' own statements: where a publish goes, a
delivery's deadline, redrives, the signing key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tasks.repository.rows import Recorded, recorded_from

_LIVE_QUEUE_COLUMNS = """id, ack_deadline_seconds, message_retention_seconds,
       message_max_deliveries, message_filters"""


async def lock_topic_queues(*, conn: Any, topic_id: str) -> list[Any] | None:
    """The queues subscribed to a topic, locked against deletion until the
    transaction ends (call it in one); None if there is no such topic."""
    topic = await conn.fetchrow("SELECT id FROM topics WHERE id = $1 FOR SHARE", topic_id)
    if topic is None:
        return None
    return list(
        await conn.fetch(
            f"SELECT {_LIVE_QUEUE_COLUMNS} FROM queues"
            " WHERE topic_id = $1 AND deleting_at IS NULL ORDER BY id FOR SHARE",
            topic_id,
        )
    )


async def lock_queue(*, conn: Any, queue_id: str) -> Any:
    """One queue, locked against deletion until the transaction ends; None if absent."""
    return await conn.fetchrow(
        f"SELECT {_LIVE_QUEUE_COLUMNS} FROM queues WHERE id = $1 AND deleting_at IS NULL FOR SHARE",
        queue_id,
    )


_EXTEND = """
    UPDATE tasks SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
     WHERE id = $1 AND attempts = $2 AND worker_id = $3 AND (status || '') = 'processing'
       AND lease_expires_at > now()
 RETURNING lease_expires_at
"""


async def extend_delivery(
    *, conn: Any, message_id: uuid.UUID, attempt: int, worker_id: str, lease_s: float
) -> datetime | None:
    """Move one delivery's deadline; None when the delivery is over (or its
    deadline has passed: the message may be someone else's already)."""
    value: datetime | None = await conn.fetchval(_EXTEND, message_id, attempt, worker_id, lease_s)
    return value


_REDRIVE_SET = """
       SET queue = q.id, dead_from = NULL, status = 'pending', attempts = 0,
           max_attempts = coalesce(q.message_max_deliveries, 100),
           timeout_seconds = q.ack_deadline_seconds,
           expires_at = now() + make_interval(secs => q.message_retention_seconds),
           run_at = now(), error = NULL, result = NULL, worker_id = NULL,
           lease_expires_at = NULL, started_at = NULL, finished_at = NULL,
           cancel_requested = false, redrives = t.redrives + 1, updated_at = now()
"""
# Dead letters of a queue: waiting in its dead queue, or ended failed in it.
_REDRIVE = f"""
    WITH dead AS (
        (SELECT id FROM tasks
          WHERE dead_from = $1 AND kind = 'message' AND status = 'pending'
          ORDER BY id LIMIT $2)
        UNION ALL
        (SELECT id FROM tasks
          WHERE queue = $1 AND kind = 'message' AND status = 'failed'
          ORDER BY id LIMIT $2)
    ), chosen AS (
        SELECT id FROM tasks WHERE id IN (SELECT id FROM dead)
         ORDER BY id LIMIT $2
           FOR UPDATE SKIP LOCKED
    )
    UPDATE tasks AS t {_REDRIVE_SET}
      FROM queues q, chosen
     WHERE q.id = $1 AND t.id = chosen.id
       AND (t.status = 'failed' OR (t.status = 'pending' AND t.dead_from = $1))
 RETURNING t.status, t.id, t.queue, t.priority + t.fair_level,
           extract(epoch FROM t.run_at)::float8, t.kind, t.owner, t.attempts
"""


async def redrive(*, conn: Any, queue_id: str, limit: int) -> list[Recorded]:
    """Send up to `limit` dead letters of a queue back to it, as new messages
    there (attempts from 0); returns them as they are now (pending, where they wait)."""
    return [recorded_from(row) for row in await conn.fetch(_REDRIVE, queue_id, limit)]


async def pending_of_other_kinds(
    *, conn: Any, ids: Sequence[uuid.UUID], kind: str
) -> set[uuid.UUID]:
    """Which of `ids` wait as tasks of another kind (left for the Python workers).
    By primary key whatever the statistics say (see tasks/repository/claims.py)."""
    rows = await conn.fetch(
        "SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND (status || '') = 'pending'"
        " AND kind <> $2",
        list(ids),
        kind,
    )
    return {row[0] for row in rows}


async def message_exists(*, conn: Any, message_id: uuid.UUID) -> bool:
    found = await conn.fetchval(
        "SELECT true FROM tasks WHERE id = $1 AND kind = 'message'", message_id
    )
    return bool(found)


_KEY_NAME = "receipt_handles"


async def receipt_key(*, conn: Any, proposal: bytes) -> bytes:
    """The key receipt handles are signed with: `proposal` if none was kept yet."""
    await conn.execute(
        "INSERT INTO receipt_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        _KEY_NAME,
        proposal,
    )
    key: bytes = await conn.fetchval("SELECT secret FROM receipt_keys WHERE name = $1", _KEY_NAME)
    return key
