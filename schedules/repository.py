"""All SQL of schedules, as small keyword-only functions (asyncpg `$n` parameters).

The tick loop's claim takes due rows FOR UPDATE SKIP LOCKED inside the
transaction that creates their tasks and moves `next_run_at` on, so a worker
that dies mid-tick leaves the tick due for the next round; the task's
idempotency key (schedule id + tick) and its unique constraint make a second
task for the same tick impossible whatever happens.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tasks.handlers import Schedule as Declared

_COLUMNS = (
    "id, kind, message, payload, cron, every_seconds, timezone, priority, queue,"
    " catch_up, enabled, next_run_at"
)
_INSERT = f"""
    INSERT INTO schedules ({_COLUMNS})
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (id) DO NOTHING
 RETURNING *
"""


async def insert(*, conn: Any, values: dict[str, Any]) -> Any | None:
    """A new schedule; None if the id is taken."""
    return await conn.fetchrow(_INSERT, *_row_values(values))


def _row_values(values: dict[str, Any]) -> list[Any]:
    names = [name.strip() for name in _COLUMNS.split(",")]
    return [json.dumps(values[n]) if n == "payload" else values[n] for n in names]


_WITH_LAST_STATUS = """
    SELECT s.*, t.status AS last_task_status
      FROM schedules s LEFT JOIN tasks t ON t.id = s.last_task_id
"""


async def get(*, conn: Any, schedule_id: str) -> Any | None:
    return await conn.fetchrow(_WITH_LAST_STATUS + " WHERE s.id = $1", schedule_id)


async def page(*, conn: Any, after: str | None, limit: int) -> list[Any]:
    """By id; `after` is the keyset cursor."""
    rows = await conn.fetch(
        _WITH_LAST_STATUS + " WHERE $1::text IS NULL OR s.id > $1 ORDER BY s.id LIMIT $2",
        after,
        limit,
    )
    return list(rows)


async def lock(*, conn: Any, schedule_id: str) -> Any | None:
    """The row, locked until the transaction ends (a PATCH waits for a tick in progress)."""
    return await conn.fetchrow("SELECT * FROM schedules WHERE id = $1 FOR UPDATE", schedule_id)


_UPDATE = f"""
    UPDATE schedules SET ({_COLUMNS}, updated_at)
         = ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, now())
     WHERE id = $1
 RETURNING *
"""


async def update(*, conn: Any, values: dict[str, Any]) -> Any | None:
    return await conn.fetchrow(_UPDATE, *_row_values(values))


async def delete(*, conn: Any, schedule_id: str) -> bool:
    return bool(await conn.fetchval("DELETE FROM schedules WHERE id = $1 RETURNING 1", schedule_id))


_DUE = """
    SELECT *, now() AS db_now FROM schedules
     WHERE enabled AND next_run_at <= now()
     ORDER BY next_run_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
"""


async def claim_due(*, conn: Any, limit: int) -> list[Any]:
    """Due schedules no other worker is ticking right now; call in a transaction."""
    return list(await conn.fetch(_DUE, limit))


_ADVANCE = """
    UPDATE schedules AS s
       SET next_run_at = a.next_run_at,
           last_run_at = coalesce(a.last_run_at, s.last_run_at),
           last_task_id = coalesce(a.last_task_id, s.last_task_id),
           updated_at = now()
      FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::uuid[])
           AS a(id, next_run_at, last_run_at, last_task_id)
     WHERE s.id = a.id
"""


async def advance(
    *,
    conn: Any,
    ids: Sequence[str],
    next_run_at: Sequence[datetime],
    last_run_at: Sequence[datetime | None],
    last_task_id: Sequence[uuid.UUID | None],
) -> None:
    await conn.execute(
        _ADVANCE, list(ids), list(next_run_at), list(last_run_at), list(last_task_id)
    )


# A declared schedule takes its definition from code on every start; its
# enabled flag and its place in time stay, unless its timing rule changed.
# A schedule created over the API with the same id is left alone.
_DECLARE = """
    INSERT INTO schedules (id, kind, message, payload, cron, every_seconds, timezone,
                           priority, queue, catch_up, declared, next_run_at)
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, true, $11)
        ON CONFLICT (id) DO UPDATE
       SET kind = excluded.kind, message = excluded.message, payload = excluded.payload,
           priority = excluded.priority, queue = excluded.queue, catch_up = excluded.catch_up,
           cron = excluded.cron, every_seconds = excluded.every_seconds,
           timezone = excluded.timezone,
           next_run_at = CASE
               WHEN (schedules.cron, schedules.every_seconds, schedules.timezone)
                    IS NOT DISTINCT FROM (excluded.cron, excluded.every_seconds, excluded.timezone)
               THEN schedules.next_run_at ELSE excluded.next_run_at END,
           updated_at = now()
     WHERE schedules.declared
 RETURNING id
"""


async def declare(*, conn: Any, schedule: Declared, message: str, next_run_at: datetime) -> bool:
    """Store a schedule declared in code; False if the id belongs to an API schedule."""
    found = await conn.fetchval(
        _DECLARE,
        schedule.id,
        schedule.kind,
        message,
        json.dumps(schedule.payload),
        schedule.cron,
        schedule.every_seconds,
        schedule.timezone,
        schedule.priority,
        schedule.queue,
        schedule.catch_up,
        next_run_at,
    )
    return found is not None
