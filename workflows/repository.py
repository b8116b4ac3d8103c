"""All SQL of workflows, as small keyword-only functions (asyncpg `$n` parameters).

The fan-in is a conditional UPDATE of a step's row (`remaining - n`, only
while that is not below 0): its row lock orders finishers, so exactly one
sees the count reach 0 and starts the next step; each created task's
idempotency key (workflow, step, member) and its unique constraint make a
second copy impossible besides.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

FINAL = "('completed', 'failed', 'canceled', 'expired')"


async def insert_workflow(*, conn: Any, workflow_id: uuid.UUID, steps: int) -> None:
    await conn.execute("INSERT INTO workflows (id, steps) VALUES ($1, $2)", workflow_id, steps)


_INSERT_STEPS = """
    INSERT INTO workflow_steps (workflow_id, position, is_group, size, remaining)
    SELECT $1, s.position, s.is_group, s.size, s.size
      FROM unnest($2::int[], $3::bool[], $4::int[]) AS s(position, is_group, size)
"""


async def insert_steps(
    *, conn: Any, workflow_id: uuid.UUID, is_group: Sequence[bool], sizes: Sequence[int]
) -> None:
    positions = list(range(1, len(sizes) + 1))
    await conn.execute(_INSERT_STEPS, workflow_id, positions, list(is_group), list(sizes))


_INSERT_MEMBERS = """
    INSERT INTO workflow_members (workflow_id, position, member, kind, message, payload,
                                  queue, priority, max_attempts, timeout_seconds)
    SELECT $1, m.* FROM unnest($2::int[], $3::int[], $4::text[], $5::text[], $6::jsonb[],
                                $7::text[], $8::int[], $9::int[], $10::float8[])
           AS m(position, member, kind, message, payload, queue, priority, max_attempts,
                timeout_seconds)
"""


async def insert_members(*, conn: Any, workflow_id: uuid.UUID, members: Sequence[Any]) -> None:
    """`members`: objects with position, member and the task fields, resolved."""
    columns = ("position", "member", "kind", "message", "payload", "queue", "priority",
               "max_attempts", "timeout_seconds")  # fmt: skip
    arrays = [[getattr(m, name) for m in members] for name in columns]
    arrays[4] = [json.dumps(payload, separators=(",", ":")) for payload in arrays[4]]
    await conn.execute(_INSERT_MEMBERS, workflow_id, *arrays)


async def step_members(*, conn: Any, workflow_id: uuid.UUID, position: int) -> list[Any]:
    """A step's members in order, with their tasks' outcomes where they have tasks."""
    rows = await conn.fetch(
        """SELECT m.*, t.status AS task_status, t.result, t.error
             FROM workflow_members m LEFT JOIN tasks t ON t.id = m.task_id
            WHERE m.workflow_id = $1 AND m.position = $2 ORDER BY m.member""",
        workflow_id,
        position,
    )
    return list(rows)


_START_STEP = """
    WITH started AS (
        UPDATE workflow_members AS m SET task_id = n.task_id
          FROM unnest($3::int[], $4::uuid[]) AS n(member, task_id)
         WHERE m.workflow_id = $1 AND m.position = $2 AND m.member = n.member
           AND m.task_id IS NULL
     RETURNING m.member
    )
    UPDATE workflow_steps SET status = 'running'
     WHERE workflow_id = $1 AND position = $2 AND status = 'waiting'
"""


async def mark_started(
    *,
    conn: Any,
    workflow_id: uuid.UUID,
    position: int,
    members: Sequence[int],
    task_ids: Sequence[uuid.UUID],
) -> None:
    await conn.execute(_START_STEP, workflow_id, position, list(members), list(task_ids))


_COUNT = f"""
    UPDATE workflow_members AS m SET counted = true
      FROM (SELECT m2.workflow_id, m2.position, m2.member
              FROM workflow_members m2 JOIN tasks t ON t.id = m2.task_id
             WHERE m2.task_id = ANY($1::uuid[]) AND NOT m2.counted AND t.status IN {FINAL}
             ORDER BY 1, 2, 3
               FOR UPDATE OF m2) AS f
     WHERE (m.workflow_id, m.position, m.member) = (f.workflow_id, f.position, f.member)
 RETURNING m.workflow_id, m.position
"""


async def count_members(*, conn: Any, task_ids: Sequence[uuid.UUID]) -> list[tuple[Any, int]]:
    """Mark these tasks' members counted, once each (only if their task is final)."""
    rows = await conn.fetch(_COUNT, list(task_ids))
    return [(row[0], row[1]) for row in rows]


_LOCK_STEPS = """
    SELECT 1 FROM workflow_steps
     WHERE (workflow_id, position) IN (SELECT * FROM unnest($1::uuid[], $2::int[]))
     ORDER BY workflow_id, position
       FOR UPDATE
"""
_FAN_IN = """
    UPDATE workflow_steps AS s
       SET remaining = s.remaining - c.n,
           status = CASE WHEN s.remaining = c.n THEN 'done' ELSE s.status END
      FROM unnest($1::uuid[], $2::int[], $3::int[]) AS c(workflow_id, position, n),
           workflows AS w
     WHERE s.workflow_id = c.workflow_id AND s.position = c.position
       AND s.status = 'running' AND s.remaining >= c.n AND w.id = s.workflow_id
 RETURNING s.workflow_id, s.position, s.remaining, s.is_group, w.steps
"""


async def fan_in(
    *, conn: Any, workflow_ids: Sequence[uuid.UUID], positions: Sequence[int], counts: Sequence[int]
) -> list[Any]:
    """Count finished members into their steps; rows locked in key order first, so
    two batches that share steps never deadlock. Returns the steps now done."""
    await conn.execute(_LOCK_STEPS, list(workflow_ids), list(positions))
    rows = await conn.fetch(_FAN_IN, list(workflow_ids), list(positions), list(counts))
    return [row for row in rows if row["remaining"] == 0]


async def lock_workflow(*, conn: Any, workflow_id: uuid.UUID) -> str | None:
    """The workflow's status, its row locked until the transaction ends (a cancel
    waits, or has committed and is seen)."""
    status: str | None = await conn.fetchval(
        "SELECT status FROM workflows WHERE id = $1 FOR UPDATE", workflow_id
    )
    return status


_END = """
    UPDATE workflows SET status = $2, error = $3, finished_at = now(), updated_at = now()
     WHERE id = $1 AND status = 'running'
 RETURNING id
"""
_CANCEL_WAITING = """
    UPDATE workflow_steps SET status = 'canceled', error = $2
     WHERE workflow_id = $1 AND status = 'waiting'
"""


async def end_workflow(
    *, conn: Any, workflow_id: uuid.UUID, status: str, error: str | None, reason: str | None
) -> bool:
    """Completed, failed or canceled: the steps not started are canceled with `reason`."""
    ended = await conn.fetchval(_END, workflow_id, status, error)
    if ended is not None and reason is not None:
        await conn.execute(_CANCEL_WAITING, workflow_id, reason)
    return ended is not None


async def active_tasks(*, conn: Any, workflow_id: uuid.UUID) -> list[uuid.UUID]:
    """Tasks of the workflow that are pending or running."""
    rows = await conn.fetch(
        """SELECT t.id FROM workflow_members m JOIN tasks t ON t.id = m.task_id
            WHERE m.workflow_id = $1 AND t.status IN ('pending', 'processing')""",
        workflow_id,
    )
    return [row[0] for row in rows]


async def get_workflow(*, conn: Any, workflow_id: uuid.UUID) -> Any | None:
    return await conn.fetchrow("SELECT * FROM workflows WHERE id = $1", workflow_id)


async def steps_of(*, conn: Any, workflow_id: uuid.UUID) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT * FROM workflow_steps WHERE workflow_id = $1 ORDER BY position", workflow_id
        )
    )


async def members_of(*, conn: Any, workflow_id: uuid.UUID) -> list[Any]:
    rows = await conn.fetch(
        """SELECT m.position, m.member, m.kind, m.message, m.task_id,
                  t.status AS task_status, t.error
             FROM workflow_members m LEFT JOIN tasks t ON t.id = m.task_id
            WHERE m.workflow_id = $1 ORDER BY m.position, m.member""",
        workflow_id,
    )
    return list(rows)


_UNCOUNTED = f"""
    SELECT m.task_id FROM workflow_members m JOIN tasks t ON t.id = m.task_id
     WHERE m.task_id IS NOT NULL AND NOT m.counted AND t.status IN {FINAL}
     LIMIT $1
"""


async def uncounted_final(*, conn: Any, limit: int) -> list[uuid.UUID]:
    """Tasks that ended where their workflow was not told (a cancel over the API,
    an expiry, a lease that ran out): the sweep moves their workflows on."""
    return [row[0] for row in await conn.fetch(_UNCOUNTED, limit)]


_PURGE = """
    DELETE FROM workflows WHERE id IN (
        SELECT id FROM workflows WHERE finished_at < $1 ORDER BY finished_at LIMIT $2)
"""


async def purge_finished(*, conn: Any, older_than: datetime, limit: int) -> int:
    result = await conn.execute(_PURGE, older_than, limit)
    return int(result.split()[-1])
