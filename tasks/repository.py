"""All SQL of the task feature, as small keyword-only functions.

Every state change is one conditional UPDATE ... WHERE status = ... RETURNING:
the rows returned are the answer, so two processes can never both win.
The engine runs in autocommit (app/db.py): one statement, one round trip.
Worker statements use asyncpg's `$n` parameters (see driver_connection).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tasks.doorbell import Bell
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
    bell: Bell


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended; written back in batches by the worker.

    A failed attempt goes back to pending after `retry_in_s` while attempts
    remain (and no cancel was asked for); the database decides, in the UPDATE.
    """

    task_id: uuid.UUID
    attempt: int
    status: TaskStatus
    result_json: str | None = None
    error: str | None = None
    retry_in_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Recorded:
    task_id: uuid.UUID
    status: str
    bell: Bell


# Where a row waits in Redis (see tasks/doorbell.py), as five columns.
_BELL = "id, queue, priority + fair_level, extract(epoch FROM run_at)::float8, kind"


def _bell(row: Any, start: int = 0) -> Bell:
    task_id, queue, rank, ready_at_s, kind = tuple(row)[start : start + 5]
    return Bell(task_id, queue, rank, ready_at_s, kind)


def bell_of(task: Task) -> Bell:
    return Bell(
        task.id, task.queue, task.priority + task.fair_level, task.run_at.timestamp(), task.kind
    )


def bell_of_row(row: Any) -> Bell:
    """As bell_of, for a whole row (RETURNING *)."""
    return Bell(
        row["id"], row["queue"], row["priority"] + row["fair_level"],
        row["run_at"].timestamp(), row["kind"],
    )  # fmt: skip


# API side -----------------------------------------------------------------


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


async def request_cancel(*, session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    """Flag a running task; its worker cancels the handler and ends it `canceled`."""
    statement = (
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.PROCESSING.value)
        .values(cancel_requested=True, updated_at=text("now()"))
        .returning(Task)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


async def requeue_finished(*, session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    """Dead-letter re-drive: a failed or canceled task starts over with a fresh budget."""
    statement = (
        update(Task)
        .where(
            Task.id == task_id,
            Task.status.in_([TaskStatus.FAILED.value, TaskStatus.CANCELED.value]),
        )
        .values(
            status=TaskStatus.PENDING.value,
            attempts=0,
            result=None,
            error=None,
            cancel_requested=False,
            worker_id=None,
            lease_expires_at=None,
            started_at=None,
            finished_at=None,
            run_at=text("now()"),
            updated_at=text("now()"),
        )
        .returning(Task)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


# Hot paths ------------------------------------------------------------------
# The worker's statements and the API's batched insert run hundreds of times a
# second, so they go straight to the asyncpg connection under SQLAlchemy's
# pool: same pool, same codecs, a fraction of the per-statement cost.


@asynccontextmanager
async def driver_connection(db: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled connection as asyncpg's own; a connection that broke is dropped from the pool."""
    async with db.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        try:
            yield raw
        except BaseException as error:
            if raw.is_closed() or isinstance(error, asyncpg.exceptions.InternalClientError):
                await conn.invalidate()
            raise


_INSERT_MANY = """
    INSERT INTO tasks (id, kind, message, payload, max_attempts, timeout_seconds, run_at,
                       idempotency_key, request_hash, expires_at, queue, priority,
                       fair_level, owner)
    SELECT n.id, n.kind, n.message, n.payload, n.max_attempts, n.timeout_seconds,
           greatest(coalesce(n.run_at, now()), now()), n.idempotency_key, n.request_hash,
           n.expires_at, n.queue, n.priority, n.fair_level, n.owner
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::float8[],
                  $7::timestamptz[], $8::text[], $9::text[], $10::timestamptz[],
                  $11::text[], $12::int[], $13::int[], $14::text[])
           AS n(id, kind, message, payload, max_attempts, timeout_seconds, run_at,
                idempotency_key, request_hash, expires_at, queue, priority, fair_level, owner)
        ON CONFLICT (idempotency_key) DO NOTHING
 RETURNING *
"""


async def insert_tasks(*, conn: Any, tasks: Sequence[Any]) -> list[Any]:
    """Many new tasks in one statement (the API's intake batches concurrent POSTs).
    A task whose idempotency key is taken is not inserted (and not returned)."""
    return list(
        await conn.fetch(
            _INSERT_MANY,
            [t.id for t in tasks],
            [t.kind for t in tasks],
            [t.message for t in tasks],
            [json.dumps(t.payload, separators=(",", ":")) for t in tasks],
            [t.max_attempts for t in tasks],
            [t.timeout_seconds for t in tasks],
            [t.run_at for t in tasks],
            [t.idempotency_key for t in tasks],
            [t.request_hash for t in tasks],
            [t.expires_at for t in tasks],
            [t.queue for t in tasks],
            [t.priority for t in tasks],
            [t.fair_level for t in tasks],
            [t.owner for t in tasks],
        )
    )


_BY_IDEMPOTENCY_KEY = """
    SELECT *, created_at < now() - make_interval(secs => $2) AS key_expired
      FROM tasks WHERE idempotency_key = ANY($1::text[])
"""


async def tasks_by_idempotency_key(
    *, conn: Any, keys: Sequence[str], key_ttl_s: float
) -> dict[str, Any]:
    rows = await conn.fetch(_BY_IDEMPOTENCY_KEY, list(keys), key_ttl_s)
    return {row["idempotency_key"]: row for row in rows}


_RELEASE_KEY = """
    UPDATE tasks SET idempotency_key = NULL
     WHERE idempotency_key = $1 AND created_at < now() - make_interval(secs => $2)
"""


async def release_expired_key(*, conn: Any, key: str, key_ttl_s: float) -> None:
    """An idempotency key older than its time to live may be used again."""
    await conn.execute(_RELEASE_KEY, key, key_ttl_s)


# clock_timestamp(), not now(): a volatile bound keeps the planner from trading
# the lookup by id for a scan of the pending index, as it would when a burst of
# new rows has left its statistics behind.
_CLAIMABLE = """status = 'pending' AND run_at <= clock_timestamp()
       AND (expires_at IS NULL OR expires_at > clock_timestamp())"""
_CLAIM = f"""
    UPDATE tasks
       SET status = 'processing', attempts = attempts + 1, worker_id = $2,
           started_at = now(), updated_at = now(),
           lease_expires_at = now() + make_interval(secs => $3)
     WHERE id = ANY($1::uuid[]) AND {_CLAIMABLE} AND kind <> ALL($4::text[])
 RETURNING id, kind, message, payload, attempts, max_attempts, timeout_seconds, {_BELL}
"""


def _claimed(row: Any) -> ClaimedTask:
    task_id, kind, message, payload, attempt, max_attempts, timeout_s = tuple(row)[:7]
    return ClaimedTask(
        task_id, kind, message, payload, attempt, max_attempts, timeout_s, _bell(row, 7)
    )


async def claim(
    *,
    conn: Any,
    ids: Sequence[uuid.UUID],
    worker_id: str,
    lease_s: float,
    limited_kinds: Sequence[str] = (),
) -> list[ClaimedTask]:
    """Claim the pending ones among `ids`; canceled, unknown and duplicate ids are
    skipped, and so are tasks of `limited_kinds` (see claim_limited)."""
    rows = await conn.fetch(_CLAIM, list(ids), worker_id, lease_s, list(limited_kinds))
    return [_claimed(row) for row in rows]


_LIMITED_CANDIDATES = f"""
    SELECT {_BELL} FROM tasks
     WHERE id = ANY($1::uuid[]) AND kind = ANY($2::text[]) AND {_CLAIMABLE}
     ORDER BY priority + fair_level, run_at
"""
_SLOTS_TAKEN = """
    SELECT pg_advisory_xact_lock(hashtextextended('taskline.kind:' || $1, 0)),
           (SELECT count(*) FROM tasks
             WHERE kind = $1 AND status = 'processing' AND lease_expires_at > now())
"""


async def claim_limited(
    *,
    conn: Any,
    ids: Sequence[uuid.UUID],
    worker_id: str,
    lease_s: float,
    limits: dict[str, int],
) -> tuple[list[ClaimedTask], list[Bell]]:
    """Claim tasks of KIND_CONCURRENCY kinds while their kind has a free slot.

    A slot is a processing row with a live lease, so a dead worker's slot frees
    itself when its lease expires. Claims of one kind are serialized by a
    transaction-level advisory lock (taken in kind order: no deadlock), so
    workers never count the same free slot twice. Returns the claimed tasks
    and the ones left without a slot (to park)."""
    claimed: list[ClaimedTask] = []
    no_slot: list[Bell] = []
    async with conn.transaction():
        rows = await conn.fetch(_LIMITED_CANDIDATES, list(ids), list(limits))
        by_kind: dict[str, list[Bell]] = {}
        for row in rows:
            bell = _bell(row)
            by_kind.setdefault(bell.kind, []).append(bell)
        for kind in sorted(by_kind):
            bells = by_kind[kind]
            _, taken = await conn.fetchrow(_SLOTS_TAKEN, kind)
            free = max(0, limits[kind] - int(taken))
            chosen = [bell.id for bell in bells[:free]]
            rows = await conn.fetch(_CLAIM, chosen, worker_id, lease_s, []) if chosen else []
            claimed += [_claimed(row) for row in rows]
            no_slot += bells[free:]
    return claimed, no_slot


_RETRY = "o.status = 'failed' AND NOT t.cancel_requested AND t.attempts < t.max_attempts"
_FINISH = f"""
    UPDATE tasks AS t
       SET status = CASE WHEN {_RETRY} THEN 'pending'
                         WHEN o.status = 'failed' AND t.cancel_requested THEN 'canceled'
                         ELSE o.status END,
           result = o.result::jsonb, error = o.error,
           errors = CASE WHEN o.error IS NULL THEN t.errors
                         ELSE t.errors || jsonb_build_array(jsonb_build_object(
                              'attempt', o.attempt, 'error', o.error, 'at', now())) END,
           run_at = CASE WHEN {_RETRY} THEN now() + make_interval(secs => o.retry_in_s)
                         ELSE t.run_at END,
           finished_at = CASE WHEN {_RETRY} THEN NULL ELSE now() END,
           worker_id = CASE WHEN {_RETRY} THEN NULL ELSE t.worker_id END,
           lease_expires_at = NULL, updated_at = now()
      FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::float8[])
           AS o(id, attempt, status, result, error, retry_in_s)
     WHERE t.id = o.id AND t.attempts = o.attempt
       AND t.status = 'processing' AND t.worker_id = $7
 RETURNING t.status, t.id, t.queue, t.priority + t.fair_level,
           extract(epoch FROM t.run_at)::float8, t.kind
"""


async def finish(*, conn: Any, outcomes: Sequence[Outcome], worker_id: str) -> list[Recorded]:
    """Record many outcomes in one statement. An attempt this worker no longer
    owns (its lease was lost and the task reclaimed) is not overwritten."""
    rows = await conn.fetch(
        _FINISH,
        [o.task_id for o in outcomes],
        [o.attempt for o in outcomes],
        [o.status.value for o in outcomes],
        [o.result_json for o in outcomes],
        [o.error for o in outcomes],
        [o.retry_in_s for o in outcomes],
        worker_id,
    )
    return [Recorded(row[1], row[0], _bell(row, 1)) for row in rows]


_RELEASE = f"""
    UPDATE tasks
       SET status = CASE WHEN cancel_requested THEN 'canceled' ELSE 'pending' END,
           attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END,
           started_at = CASE WHEN cancel_requested THEN started_at END,
           finished_at = CASE WHEN cancel_requested THEN now() END,
           worker_id = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = ANY($1::uuid[]) AND status = 'processing' AND worker_id = $2
 RETURNING status, {_BELL}
"""


async def release(*, conn: Any, ids: Sequence[uuid.UUID], worker_id: str) -> list[Recorded]:
    """Give claimed tasks back (shutdown): their interrupted attempt does not count.
    They are pending again, except a task whose cancel was asked for: canceled."""
    rows = await conn.fetch(_RELEASE, list(ids), worker_id)
    return [Recorded(row[1], row[0], _bell(row, 1)) for row in rows]


_EXTEND_LEASES = """
    UPDATE tasks SET lease_expires_at = now() + make_interval(secs => $3)
     WHERE id = ANY($2::uuid[]) AND status = 'processing' AND worker_id = $1
       AND lease_expires_at > now()
 RETURNING id, cancel_requested
"""


@dataclass(frozen=True, slots=True)
class Renewal:
    renewed: set[uuid.UUID]
    cancel_requested: list[uuid.UUID]


async def extend_leases(
    *, conn: Any, worker_id: str, ids: Sequence[uuid.UUID], lease_s: float
) -> Renewal:
    """Renew the leases of the tasks this worker still holds, in one statement. A
    lease that has already expired is not renewed: the task may be someone else's."""
    rows = await conn.fetch(_EXTEND_LEASES, worker_id, list(ids), lease_s)
    return Renewal({row[0] for row in rows}, [row[0] for row in rows if row[1]])


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
                    'attempt', t.attempts, 'error', {_LOST}, 'at', now())),
           finished_at = CASE WHEN NOT t.cancel_requested AND t.attempts < t.max_attempts
                              THEN NULL ELSE now() END,
           worker_id = NULL, lease_expires_at = NULL, updated_at = now()
      FROM expired
     WHERE t.id = expired.id
 RETURNING t.status, t.id, t.queue, t.priority + t.fair_level,
           extract(epoch FROM t.run_at)::float8, t.kind
"""


async def recover_expired(*, conn: Any, limit: int) -> list[Recorded]:
    """Tasks whose worker died: back to pending (to re-ring), or failed or canceled."""
    rows = await conn.fetch(_RECOVER_EXPIRED, limit)
    return [Recorded(row[1], row[0], _bell(row, 1)) for row in rows]


_STALE_PENDING = f"""
    SELECT {_BELL} FROM tasks
     WHERE status = 'pending' AND run_at <= now()
       AND updated_at < now() - make_interval(secs => $1)
     ORDER BY run_at
     LIMIT $2
"""


async def stale_pending(*, conn: Any, grace_s: float, limit: int) -> list[Bell]:
    """Ready tasks untouched for `grace_s`: candidates for a lost doorbell."""
    return [_bell(row) for row in await conn.fetch(_STALE_PENDING, grace_s, limit)]


_TOUCH = """
    UPDATE tasks SET updated_at = now()
     WHERE id = ANY($1::uuid[]) AND status = 'pending'
"""


async def touch_pending(*, conn: Any, ids: Sequence[uuid.UUID]) -> None:
    """Restart the grace period of re-rung tasks, so they are not rung again at once."""
    await conn.execute(_TOUCH, list(ids))


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
 RETURNING t.id
"""


async def expire_overdue(*, conn: Any, limit: int) -> int:
    """Pending tasks past their expires_at end `expired`; they never run."""
    return len(await conn.fetch(_EXPIRE_OVERDUE, limit))


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
# 0006); the split of pending into ready and scheduled, and the oldest ready
# task, from ix_tasks_active_queue, one range per group: their cost grows with
# the number of scheduled tasks and groups, not with the number of rows.
_QUEUE_COUNTS = """
    WITH active AS (
        SELECT queue, priority, status, sum(n) AS n
          FROM (SELECT queue, priority, status, count AS n FROM task_counts
                UNION ALL
                SELECT queue, priority, status, delta FROM task_count_changes) AS c
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
    return list(await conn.fetch(_QUEUE_COUNTS))


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
