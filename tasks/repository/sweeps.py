"""Sweeps of the reconcile loop, and the queue counts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasks.doorbell import Bell
from tasks.repository.rows import BELL_COLUMNS, RECORDED_COLUMNS, Recorded, bell_from, recorded_from

_LOST = "'worker lost: ' || coalesce(t.worker_id, '?') || ' stopped renewing its lease'"
_RECOVER_EXPIRED = f"""
    WITH expired AS (
        SELECT id FROM tasks
         WHERE status = 'processing' AND lease_expires_at < now()
         ORDER BY lease_expires_at
         LIMIT $1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE tasks AS t
       SET status = CASE WHEN t.cancel_requested THEN 'canceled'
                         WHEN t.attempts < t.max_attempts THEN 'pending'
                         ELSE 'failed' END,
           error = {_LOST},
           errors = t.errors || jsonb_build_array(jsonb_build_object(
                    'redrive', t.redrives, 'attempt', t.attempts, 'error', {_LOST},
                    'at', now())),
           finished_at = CASE WHEN NOT t.cancel_requested AND t.attempts < t.max_attempts
                              THEN NULL ELSE now() END,
           worker_id = NULL, lease_expires_at = NULL, updated_at = now()
      FROM expired
     WHERE t.id = expired.id
 RETURNING t.status, t.id, t.queue, t.priority + t.fair_level,
           extract(epoch FROM t.run_at)::float8, t.kind, t.owner, t.attempts
"""


async def recover_expired(*, conn: Any, limit: int) -> list[Recorded]:
    """Tasks whose worker died: back to pending (to re-ring), or failed or canceled."""
    rows = await conn.fetch(_RECOVER_EXPIRED, limit)
    return [recorded_from(row) for row in rows]


# The pending tasks in the order workers take them (queue, then priority, then
# time), a bounded chunk after a keyset cursor, along ix_tasks_active_queue
# (queue, priority, status, run_at): the cost of a chunk is its size, whatever
# else the table holds. Every row is returned, so the cursor always advances;
# `stale` says whether its doorbell should be checked (due, and untouched for
# the grace period, so a ring still on its way from the API is not doubted).
_PENDING_COLUMNS = f"""
    SELECT {BELL_COLUMNS}, priority, run_at,
           run_at <= now() AND updated_at < now() - make_interval(secs => $1) AS stale
      FROM tasks
"""
_PENDING_FIRST = f"""{_PENDING_COLUMNS}
     WHERE status = 'pending'
     ORDER BY queue, priority, status, run_at, id
     LIMIT $2
"""
_PENDING_AFTER = f"""{_PENDING_COLUMNS}
     WHERE status = 'pending'
       AND (queue, priority, status, run_at, id) > ($3, $4, 'pending', $5, $6)
     ORDER BY queue, priority, status, run_at, id
     LIMIT $2
"""


@dataclass(frozen=True, slots=True)
class PendingCursor:
    """Where a walk over the pending tasks stopped (the last row's sort key)."""

    queue: str
    priority: int
    run_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        return json.dumps([self.queue, self.priority, self.run_at.isoformat(), str(self.id)])

    @classmethod
    def decode(cls, text: str | None) -> PendingCursor | None:
        """None (start over) for anything that is not a cursor this code wrote."""
        try:
            queue, priority, run_at, task_id = json.loads(text or "")
            return cls(
                str(queue), int(priority), datetime.fromisoformat(run_at), uuid.UUID(task_id)
            )
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class PendingChunk:
    stale: list[Bell]  # due and untouched for the grace period: is the doorbell there?
    rows: int
    next: PendingCursor | None  # None: the walk reached the end


async def pending_chunk(
    *, conn: Any, after: PendingCursor | None, grace_s: float, limit: int
) -> PendingChunk:
    """Up to `limit` pending tasks after `after`, in queue, priority and time order."""
    if after is None:
        rows = await conn.fetch(_PENDING_FIRST, grace_s, limit)
    else:
        args = (after.queue, after.priority, after.run_at, after.id)
        rows = await conn.fetch(_PENDING_AFTER, grace_s, limit, *args)
    cursor = None
    if len(rows) == limit:
        last = rows[-1]
        cursor = PendingCursor(last["queue"], last["priority"], last["run_at"], last["id"])
    return PendingChunk([bell_from(row) for row in rows if row["stale"]], len(rows), cursor)


_EXPIRE_OVERDUE = """
    WITH overdue AS (
        SELECT id FROM tasks
         WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= now()
         ORDER BY expires_at
         LIMIT $1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE tasks AS t
       SET status = 'expired', error = 'expired: not started before expires_at',
           finished_at = now(), updated_at = now()
      FROM overdue
     WHERE t.id = overdue.id
 RETURNING t.status, t.id, t.queue, t.priority + t.fair_level,
           extract(epoch FROM t.run_at)::float8, t.kind, t.owner, t.attempts
"""


async def expire_overdue(*, conn: Any, limit: int) -> list[Recorded]:
    """Pending tasks past their expires_at end `expired`; they never run."""
    return [recorded_from(row) for row in await conn.fetch(_EXPIRE_OVERDUE, limit)]


_EXPIRE_IDS = f"""
    UPDATE tasks
       SET status = 'expired', error = 'expired: not started before expires_at',
           finished_at = now(), updated_at = now()
     WHERE id = ANY($1::uuid[]) AND status = 'pending'
       AND expires_at IS NOT NULL AND expires_at <= now()
 RETURNING {RECORDED_COLUMNS}
"""


async def expire_ids(*, conn: Any, ids: Sequence[uuid.UUID]) -> list[Recorded]:
    """Of these tasks (the claim refused them), end those past their expires_at."""
    return [recorded_from(row) for row in await conn.fetch(_EXPIRE_IDS, list(ids))]


_PURGE_FINISHED = """
    DELETE FROM tasks WHERE id IN (
        SELECT id FROM tasks
         WHERE id < $1 AND finished_at < $2
           AND status IN ('completed', 'failed', 'canceled', 'expired')
         ORDER BY id
         LIMIT $3)
"""


async def purge_finished(*, conn: Any, older_than: datetime, limit: int) -> int:
    """Delete finished tasks created and finished before `older_than`, oldest first.

    Ids are time-ordered, so the primary key finds the old rows; no extra index."""
    boundary = uuid.UUID(int=int(older_than.timestamp() * 1000) << 80)
    result = await conn.execute(_PURGE_FINISHED, boundary, older_than, limit)
    return int(result.split()[-1])


# Active tasks per queue and priority from the trigger-kept counters (migration
# 0006; since 0012 they also count dead letters, status `dead`, left out here);
# the split of pending into ready and scheduled, and the oldest ready task,
# from ix_tasks_active_queue, one range per group: their cost grows with the
# number of scheduled tasks and groups, not with the number of rows.
QUEUE_COUNTS = """
    WITH active AS (
        SELECT queue, priority, status, sum(n) AS n
          FROM (SELECT queue, priority, status, count AS n FROM task_counts
                UNION ALL
                SELECT queue, priority, status, delta FROM task_count_changes) AS c
         WHERE status IN ('pending', 'processing')
         GROUP BY 1, 2, 3
    ), groups AS (
        SELECT queue, priority,
               coalesce(sum(n) FILTER (WHERE status = 'pending'), 0)::bigint AS pending,
               coalesce(sum(n) FILTER (WHERE status = 'processing'), 0)::bigint AS processing
          FROM active GROUP BY 1, 2 HAVING sum(n) <> 0
    )
    SELECT g.queue, g.priority, g.pending, g.processing,
           (SELECT count(*) FROM tasks t
             WHERE t.queue = g.queue AND t.priority = g.priority
               AND t.status = 'pending' AND t.run_at > now()) AS scheduled,
           (SELECT extract(epoch FROM now() - min(t.run_at))::float8 FROM tasks t
             WHERE t.queue = g.queue AND t.priority = g.priority
               AND t.status = 'pending' AND t.run_at <= now()) AS oldest_ready_age_s
      FROM groups g
     ORDER BY g.queue, g.priority
"""


async def queue_counts(*, conn: Any) -> list[Any]:
    """Active tasks per queue and priority: pending, processing, scheduled, and
    the age of the oldest ready task."""
    return list(await conn.fetch(QUEUE_COUNTS))


_FOLD_COUNT_CHANGES = """
    WITH moved AS (
        DELETE FROM task_count_changes RETURNING queue, priority, status, delta
    )
    INSERT INTO task_counts AS c (queue, priority, status, count)
    SELECT queue, priority, status, sum(delta) FROM moved GROUP BY 1, 2, 3
        ON CONFLICT (queue, priority, status) DO UPDATE SET count = c.count + excluded.count
"""


async def fold_count_changes(*, conn: Any) -> None:
    """Add the changes the triggers appended into the counters (and drop them),
    so reading the counts stays cheap. Safe to run concurrently."""
    async with conn.transaction():
        await conn.execute(_FOLD_COUNT_CHANGES)
        await conn.execute("DELETE FROM task_counts WHERE count = 0")
