"""All SQL of the task feature, as small keyword-only functions.

Every state change is one conditional UPDATE ... WHERE status = ... RETURNING:
the rows returned are the answer, so two processes can never both win.
The engine runs in autocommit (app/db.py): one statement, one round trip.
Worker statements use asyncpg's `$n` parameters (see driver_connection).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tasks.models import Task, TaskStatus


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    id: uuid.UUID
    kind: str
    message: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    timeout_seconds: float | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended; written back in batches by the worker."""

    task_id: uuid.UUID
    attempt: int
    status: TaskStatus
    result_json: str | None = None
    error: str | None = None


# API side -----------------------------------------------------------------


_TASKS = cast(Table, Task.__table__)


async def insert_task(
    *, session: AsyncSession, task_id: uuid.UUID, kind: str, message: str, payload: dict[str, Any]
) -> Row[Any]:
    """A Core insert: the ORM's unit of work would cost more than the round trip."""
    statement = (
        insert(_TASKS)
        .values(id=task_id, kind=kind, message=message, payload=payload)
        .returning(*_TASKS.c)
    )
    return (await session.execute(statement)).one()


async def get_task(*, session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    return await session.get(Task, task_id, populate_existing=True)


async def list_tasks(
    *,
    session: AsyncSession,
    status: TaskStatus | None,
    kind: str | None,
    before_id: uuid.UUID | None,
    limit: int,
) -> Sequence[Task]:
    """Newest first by the time-ordered id; `before_id` is the keyset cursor."""
    statement = select(Task).order_by(Task.id.desc()).limit(limit)
    if status is not None:
        statement = statement.where(Task.status == status.value)
    if kind is not None:
        statement = statement.where(Task.kind == kind)
    if before_id is not None:
        statement = statement.where(Task.id < before_id)
    return (await session.scalars(statement)).all()


async def cancel_pending(*, session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    statement = (
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.PENDING.value)
        .values(
            status=TaskStatus.CANCELED.value,
            finished_at=text("now()"),
            updated_at=text("now()"),
        )
        .returning(Task)
        # The task was loaded by the dependency; take the row as the UPDATE returned it.
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


# Worker side ---------------------------------------------------------------
# The worker's statements run hundreds of times a second, so they go straight
# to the asyncpg connection under SQLAlchemy's pool: same pool, same codecs,
# a fraction of the per-statement cost.


@asynccontextmanager
async def driver_connection(db: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled connection as asyncpg's own; a connection that broke is dropped from the pool."""
    async with db.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        try:
            yield raw
        except BaseException:
            if raw.is_closed():
                await conn.invalidate()
            raise


_CLAIM = """
    UPDATE tasks
       SET status = 'processing', attempts = attempts + 1, worker_id = $2,
           started_at = now(), updated_at = now(),
           lease_expires_at = now() + make_interval(secs => $3)
     WHERE id = ANY($1::uuid[]) AND status = 'pending'
 RETURNING id, kind, message, payload, attempts, max_attempts, timeout_seconds
"""


async def claim(
    *, conn: Any, ids: Sequence[uuid.UUID], worker_id: str, lease_s: float
) -> list[ClaimedTask]:
    """Claim the pending ones among `ids`; canceled, unknown and duplicate ids are skipped."""
    rows = await conn.fetch(_CLAIM, list(ids), worker_id, lease_s)
    return [ClaimedTask(*row) for row in rows]


_FINISH = """
    UPDATE tasks AS t
       SET status = o.status, result = o.result::jsonb, error = o.error,
           finished_at = now(), updated_at = now(), lease_expires_at = NULL
      FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[])
           AS o(id, attempt, status, result, error)
     WHERE t.id = o.id AND t.attempts = o.attempt
       AND t.status = 'processing' AND t.worker_id = $6
 RETURNING t.id
"""


async def finish(*, conn: Any, outcomes: Sequence[Outcome], worker_id: str) -> set[uuid.UUID]:
    """Record many outcomes in one statement. An attempt this worker no longer
    owns (its lease was lost and the task reclaimed) is not overwritten."""
    rows = await conn.fetch(
        _FINISH,
        [o.task_id for o in outcomes],
        [o.attempt for o in outcomes],
        [o.status.value for o in outcomes],
        [o.result_json for o in outcomes],
        [o.error for o in outcomes],
        worker_id,
    )
    return {row[0] for row in rows}


_RELEASE = """
    UPDATE tasks
       SET status = 'pending', attempts = attempts - 1, worker_id = NULL,
           started_at = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = ANY($1::uuid[]) AND status = 'processing' AND worker_id = $2
 RETURNING id
"""


async def release(*, conn: Any, ids: Sequence[uuid.UUID], worker_id: str) -> list[uuid.UUID]:
    """Give claimed tasks back (shutdown): their interrupted attempt does not count."""
    return [row[0] for row in await conn.fetch(_RELEASE, list(ids), worker_id)]


_EXTEND_LEASES = """
    UPDATE tasks SET lease_expires_at = now() + make_interval(secs => $2)
     WHERE status = 'processing' AND worker_id = $1
"""


async def extend_leases(*, conn: Any, worker_id: str, lease_s: float) -> None:
    await conn.execute(_EXTEND_LEASES, worker_id, lease_s)


_RECOVER_EXPIRED = """
    WITH expired AS (
        SELECT id FROM tasks
         WHERE status = 'processing' AND lease_expires_at < now()
         ORDER BY lease_expires_at
         LIMIT $1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE tasks AS t
       SET status = CASE WHEN t.attempts < t.max_attempts THEN 'pending' ELSE 'failed' END,
           error = CASE WHEN t.attempts < t.max_attempts THEN t.error
                        ELSE 'worker lost: ' || coalesce(t.worker_id, '?')
                             || ' stopped renewing its lease' END,
           finished_at = CASE WHEN t.attempts < t.max_attempts THEN NULL ELSE now() END,
           worker_id = NULL, lease_expires_at = NULL, updated_at = now()
      FROM expired
     WHERE t.id = expired.id
 RETURNING t.id, t.status
"""


async def recover_expired(*, conn: Any, limit: int) -> list[uuid.UUID]:
    """Tasks whose worker died: back to pending (ids returned, to re-ring) or failed."""
    rows = await conn.fetch(_RECOVER_EXPIRED, limit)
    return [row[0] for row in rows if row[1] == TaskStatus.PENDING.value]


_STALE_PENDING = """
    SELECT id FROM tasks
     WHERE status = 'pending' AND run_at <= now()
       AND updated_at < now() - make_interval(secs => $1)
     ORDER BY run_at
     LIMIT $2
"""


async def stale_pending(*, conn: Any, grace_s: float, limit: int) -> list[uuid.UUID]:
    """Ready tasks untouched for `grace_s`: candidates for a lost doorbell."""
    return [row[0] for row in await conn.fetch(_STALE_PENDING, grace_s, limit)]


_TOUCH = """
    UPDATE tasks SET updated_at = now()
     WHERE id = ANY($1::uuid[]) AND status = 'pending'
"""


async def touch_pending(*, conn: Any, ids: Sequence[uuid.UUID]) -> None:
    """Restart the grace period of re-rung tasks, so they are not rung again at once."""
    await conn.execute(_TOUCH, list(ids))
