"""The API's statements: reads and changes through the ORM session, and the
intake's lookups of idempotency keys (its insert: inserts.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

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
