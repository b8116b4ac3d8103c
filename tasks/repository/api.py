"""The API's statements: reads and changes through the ORM session, and the
batched insert of the intake."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import ColumnElement, any_, func, select, text, true, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from tasks.models import Task, TaskStatus

# API side -----------------------------------------------------------------
#
# Every statement a request runs takes `owner`, with no default: the tenant
# whose tasks it may see or change (the caller's `tenant`), or None for every
# tenant (an admin key, or AUTH=none). Another tenant's task is simply not
# found, so the API answers it as it answers an unknown id.


def _owned(owner: str | None) -> ColumnElement[bool]:
    return true() if owner is None else Task.owner == owner


async def get_task(*, session: AsyncSession, task_id: uuid.UUID, owner: str | None) -> Task | None:
    statement = (
        select(Task)
        .where(Task.id == task_id, _owned(owner))
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


async def list_tasks(
    *,
    session: AsyncSession,
    status: TaskStatus | None,
    kind: str | None,
    before_id: uuid.UUID | None,
    limit: int,
    owner: str | None,
    queue: str | None = None,
) -> Sequence[Task]:
    """Newest first by the time-ordered id; `before_id` is the keyset cursor.

    The page's ids come first, from an index alone, then their rows by primary
    key. As one plain query, PostgreSQL may walk the primary key backwards
    filtering on status instead, which reads most of the table when the status
    is rare among recent rows. A kind or an owner without a status takes the
    newest `limit` of each status along (kind, status, id) or (owner, status,
    id), and the newest `limit` of those: six short index walks, and no index
    of its own for every claim and outcome to update.
    """
    found = aliased(Task)
    conditions: list[ColumnElement[bool]] = []
    if kind is not None:
        conditions.append(found.kind == kind)
    if before_id is not None:
        conditions.append(found.id < before_id)
    if queue is not None:
        conditions.append(found.queue == queue)
    if owner is not None:
        conditions.append(found.owner == owner)
    by_status = status is None and (kind is not None or owner is not None)
    statuses = list(TaskStatus) if by_status else [status]
    walks = [
        select(found.id)
        .where(*conditions, *([] if one is None else [found.status == one.value]))
        .order_by(found.id.desc())
        .limit(limit)
        for one in statuses
    ]
    merged = union_all(*walks).subquery() if by_status else walks[0].subquery()
    page = select(merged.c.id).order_by(merged.c.id.desc()).limit(limit).correlate(None)
    statement = (
        select(Task)
        .where(Task.id == any_(func.array(page.scalar_subquery())))
        .order_by(Task.id.desc())
    )
    return (await session.scalars(statement)).all()


async def cancel_pending(
    *, session: AsyncSession, task_id: uuid.UUID, owner: str | None
) -> Task | None:
    statement = (
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.PENDING.value, _owned(owner))
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


async def request_cancel(
    *, session: AsyncSession, task_id: uuid.UUID, owner: str | None
) -> Task | None:
    """Flag a running task; its worker cancels the handler and ends it `canceled`."""
    statement = (
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.PROCESSING.value, _owned(owner))
        .values(cancel_requested=True, updated_at=text("now()"))
        .returning(Task)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


async def requeue_finished(
    *, session: AsyncSession, task_id: uuid.UUID, owner: str | None
) -> Task | None:
    """Dead-letter re-drive: a failed or canceled task starts over with a fresh budget."""
    statement = (
        update(Task)
        .where(
            Task.id == task_id,
            Task.status.in_([TaskStatus.FAILED.value, TaskStatus.CANCELED.value]),
            _owned(owner),
        )
        .values(
            status=TaskStatus.PENDING.value,
            attempts=0,
            redrives=Task.redrives + 1,
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


_INSERT_TEMPLATE = """
    INSERT INTO tasks (id, kind, message, payload, max_attempts, timeout_seconds, run_at,
                       idempotency_key, request_hash, expires_at, queue, priority,
                       fair_level, owner, workflow_id, inputs)
    SELECT n.id, n.kind, n.message, n.payload, n.max_attempts, n.timeout_seconds,
           greatest(coalesce(n.run_at, now()), now()), n.idempotency_key, n.request_hash,
           n.expires_at, n.queue, n.priority, n.fair_level, n.owner, n.workflow_id, n.inputs
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::float8[],
                  $7::timestamptz[], $8::text[], $9::text[], $10::timestamptz[],
                  $11::text[], $12::int[], $13::int[], $14::text[], $15::uuid[], $16::jsonb[])
           AS n(id, kind, message, payload, max_attempts, timeout_seconds, run_at,
                idempotency_key, request_hash, expires_at, queue, priority, fair_level, owner,
                workflow_id, inputs)
       {on_conflict}
 RETURNING id, run_at, created_at
"""
# ON CONFLICT makes every row a speculative insertion (one more WAL record and
# a check of the keys' index each), which only a row with a key can need: an
# INSERT of tasks without keys took about 8% less time without it.
_INSERT_KEYED = _INSERT_TEMPLATE.format(
    on_conflict="ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
)
_INSERT_UNKEYED = _INSERT_TEMPLATE.format(on_conflict="")


async def insert_tasks(*, conn: Any, tasks: Sequence[Any]) -> list[dict[str, Any]]:
    """Many new tasks in one statement (the API's intake batches concurrent POSTs),
    as whole rows. A task whose idempotency key is taken is not inserted (and not
    returned)."""
    keyed = any(t.idempotency_key is not None for t in tasks)
    made = await conn.fetch(
        _INSERT_KEYED if keyed else _INSERT_UNKEYED,
        [t.id for t in tasks],
        [t.kind for t in tasks],
        [t.message for t in tasks],
        [_json(t.payload) for t in tasks],
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
        [t.workflow_id for t in tasks],
        [None if t.inputs is None else _json(t.inputs) for t in tasks],
    )
    by_id = {t.id: t for t in tasks}
    return [fresh_row(by_id[r[0]], run_at=r[1], created_at=r[2]) for r in made]


def fresh_row(task: Any, *, run_at: datetime, created_at: datetime) -> dict[str, Any]:
    """The row an INSERT of `task` stored, without reading it back: the INSERT
    returns only what PostgreSQL decided (the times); the rest is what was sent,
    and the columns' defaults for a new task. Decoding 1,000 whole rows cost the
    API about 9 ms of its 75 ms for a batch. test_repository holds this to what
    `SELECT *` reads."""
    return {
        "id": task.id, "kind": task.kind, "message": task.message, "payload": task.payload,
        "status": "pending", "result": None, "error": None, "errors": [], "attempts": 0,
        "max_attempts": task.max_attempts, "redrives": 0,
        "timeout_seconds": task.timeout_seconds, "run_at": run_at,
        "expires_at": task.expires_at, "lease_expires_at": None, "worker_id": None,
        "queue": task.queue, "priority": task.priority, "fair_level": task.fair_level,
        "owner": task.owner, "cancel_requested": False,
        "idempotency_key": task.idempotency_key, "request_hash": task.request_hash,
        "workflow_id": task.workflow_id, "inputs": task.inputs, "dead_from": None,
        "created_at": created_at, "updated_at": created_at, "started_at": None,
        "finished_at": None,
    }  # fmt: skip


def _json(value: Any) -> str:
    return to_json(value).decode()  # a tenth of json.dumps' time for a small payload


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


_OWNER_QUEUE_COUNTS = """
    SELECT queue, priority,
           count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'processing') AS processing,
           count(*) FILTER (WHERE status = 'pending' AND run_at > now()) AS scheduled,
           extract(epoch FROM now() - min(run_at) FILTER (
               WHERE status = 'pending' AND run_at <= now()))::float8 AS oldest_ready_age_s
      FROM tasks
     WHERE owner = $1 AND status IN ('pending', 'processing')
     GROUP BY queue, priority
     ORDER BY queue, priority
"""


async def owner_queue_counts(*, conn: Any, owner: str) -> list[Any]:
    """queue_counts for one tenant's tasks, counted from its active rows
    (ix_tasks_active_owner), in the same shape."""
    return list(await conn.fetch(_OWNER_QUEUE_COUNTS, owner))


_BY_IDS = "SELECT * FROM tasks WHERE id = ANY($1::uuid[])"


async def tasks_by_ids(*, conn: Any, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Whole rows of these tasks, by id (those that exist)."""
    return {row["id"]: row for row in await conn.fetch(_BY_IDS, list(ids))}
