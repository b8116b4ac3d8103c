"""The worker's hot path: claim, record outcomes, give back, renew leases."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from tasks.doorbell import Bell
from tasks.repository.rows import (
    BELL_COLUMNS,
    RECORDED_COLUMNS,
    ClaimedTask,
    Outcome,
    Recorded,
    Renewal,
    bell_from,
    recorded_from,
)

# A claim must look its ids up by primary key. When the statistics say almost
# nothing is pending (a long history of finished tasks, analyzed before a
# burst), the planner would rather scan a partial index of pending tasks,
# filtering on id: a scan of the whole backlog per claim (bench/backlog_drain.py:
# 10 ids took 4 ms among 20,000 pending). `status || ''` cannot match those
# indexes' predicates, so the primary key is the only way in; clock_timestamp()
# keeps run_at out of index conditions likewise. The statements on running
# tasks below do the same: with stale statistics, an outcome of 10 tasks
# hashed all 5,000 running ones.
_CLAIMABLE = """(status || '') = 'pending' AND run_at <= clock_timestamp()
       AND (expires_at IS NULL OR expires_at > clock_timestamp())"""
# A claim commits without waiting for its WAL flush unless
# CLAIM_SYNCHRONOUS_COMMIT=on ($5): its task starts without waiting for a
# flush, and a worker drains faster. What that risks is a claim that a PostgreSQL crash
# (not a clean stop, which flushes) forgets: the task is pending again and runs
# again, as after a worker crash; the handlers are at-least-once anyway. Any
# later durable commit (the outcome, a cancel) flushes the claim before it.
# set_config(..., true) lasts for the statement's own transaction, so a pooled
# or PgBouncer server connection keeps its setting; the uncorrelated subquery
# runs once, before any row is touched.
_CLAIM_TEMPLATE = f"""
    UPDATE tasks
       SET status = 'processing', attempts = attempts + 1, worker_id = $2,
           started_at = now(), updated_at = now(),
           lease_expires_at = now() + make_interval(secs => $3)
     WHERE {{which}} AND {_CLAIMABLE} AND {{kinds}}
       AND (SELECT set_config('synchronous_commit', $5::text, true)) IS NOT NULL
 RETURNING id, kind, message, payload, attempts, max_attempts, timeout_seconds, {BELL_COLUMNS},
           workflow_id, inputs, lease_expires_at, owner
"""
# The worker's claim skips the kinds given ($4); an HTTP consumer's takes only them.
_SKIP_KINDS, _ONLY_KINDS = "kind <> ALL($4::text[])", "kind = ANY($4::text[])"
_CLAIM = _CLAIM_TEMPLATE.format(which="id = ANY($1::uuid[])", kinds=_SKIP_KINDS)
_CLAIM_KINDS = _CLAIM_TEMPLATE.format(which="id = ANY($1::uuid[])", kinds=_ONLY_KINDS)
# One id, the common claim of a worker that is not busy, has a statement of its
# own: PostgreSQL plans `id = $1` once per connection (its generic plan costs
# what a custom one does), while `id = ANY($1)` is planned again at every claim
# (the generic plan's estimate assumes ten ids). That planning was 0.1 ms of
# the 0.45 ms that a claim took, on the path from a POST to its handler.
_CLAIM_ONE = _CLAIM_TEMPLATE.format(which="id = $1::uuid", kinds=_SKIP_KINDS)
_CLAIM_KINDS_ONE = _CLAIM_TEMPLATE.format(which="id = $1::uuid", kinds=_ONLY_KINDS)


def _claimed(row: Any) -> ClaimedTask:
    task_id, kind, message, payload, attempt, max_attempts, timeout_s = tuple(row)[:7]
    workflow_id, inputs = row[12], row[13]
    return ClaimedTask(
        task_id, kind, message, payload, attempt, max_attempts, timeout_s, bell_from(row, 7),
        workflow_id, inputs, row[14], row[15],
    )  # fmt: skip


async def claim(
    *,
    conn: Any,
    ids: Sequence[uuid.UUID],
    worker_id: str,
    lease_s: float,
    limited_kinds: Sequence[str] = (),
    synchronous_commit: str = "off",
) -> list[ClaimedTask]:
    """Claim the pending ones among `ids`; canceled, unknown and duplicate ids are
    skipped, and so are tasks of `limited_kinds` (see claim_limited).
    `synchronous_commit`: CLAIM_SYNCHRONOUS_COMMIT (see _CLAIM_TEMPLATE)."""
    statement, which = (_CLAIM_ONE, ids[0]) if len(ids) == 1 else (_CLAIM, list(ids))
    rows = await conn.fetch(
        statement, which, worker_id, lease_s, list(limited_kinds), synchronous_commit
    )
    return [_claimed(row) for row in rows]


async def claim_kinds(
    *,
    conn: Any,
    ids: Sequence[uuid.UUID],
    worker_id: str,
    lease_s: float,
    kinds: Sequence[str],
    synchronous_commit: str = "off",
) -> list[ClaimedTask]:
    """The same claim for a consumer that handles only `kinds` (an HTTP consumer
    leasing messages): tasks of other kinds among `ids` are left pending."""
    statement, which = (_CLAIM_KINDS_ONE, ids[0]) if len(ids) == 1 else (_CLAIM_KINDS, list(ids))
    rows = await conn.fetch(statement, which, worker_id, lease_s, list(kinds), synchronous_commit)
    return [_claimed(row) for row in rows]


_LIMITED_CANDIDATES = f"""
    SELECT {BELL_COLUMNS} FROM tasks
     WHERE id = ANY($1::uuid[]) AND kind = ANY($2::text[]) AND {_CLAIMABLE}
     ORDER BY priority + fair_level, run_at
"""
# Two statements, not one: under READ COMMITTED a statement sees the rows
# committed before it started, so a count in the statement that waited for the
# lock would miss the claims of the transaction that held it.
_KIND_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('taskline.kind:' || $1, 0))"
_SLOTS_TAKEN = """
    SELECT count(*) FROM tasks
     WHERE kind = $1 AND status = 'processing' AND lease_expires_at > clock_timestamp()
"""


async def claim_limited(
    *,
    conn: Any,
    ids: Sequence[uuid.UUID],
    worker_id: str,
    lease_s: float,
    limits: dict[str, int],
    synchronous_commit: str = "off",
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
            bell = bell_from(row)
            by_kind.setdefault(bell.kind, []).append(bell)
        for kind in sorted(by_kind):
            bells = by_kind[kind]
            await conn.execute(_KIND_LOCK, kind)
            taken = await conn.fetchval(_SLOTS_TAKEN, kind)
            free = max(0, limits[kind] - int(taken))
            chosen = [bell.id for bell in bells[:free]]
            rows = (
                await conn.fetch(_CLAIM, chosen, worker_id, lease_s, [], synchronous_commit)
                if chosen
                else []
            )
            claimed += [_claimed(row) for row in rows]
            no_slot += bells[free:]
    return claimed, no_slot


# A negative retry_in_s: the handler said retrying cannot help (NoRetry).
_RETRY = (
    "o.status = 'failed' AND o.retry_in_s >= 0"
    " AND NOT t.cancel_requested AND t.attempts < t.max_attempts"
)
_FINISH = f"""
    UPDATE tasks AS t
       SET status = CASE WHEN {_RETRY} THEN 'pending'
                         WHEN o.status = 'failed' AND t.cancel_requested THEN 'canceled'
                         ELSE o.status END,
           result = o.result::jsonb, error = o.error,
           errors = CASE WHEN o.error IS NULL THEN t.errors
                         ELSE t.errors || jsonb_build_array(jsonb_build_object(
                              'redrive', t.redrives, 'attempt', o.attempt,
                              'error', o.error, 'at', now())) END,
           run_at = CASE WHEN {_RETRY} THEN now() + make_interval(secs => o.retry_in_s)
                         ELSE t.run_at END,
           finished_at = CASE WHEN {_RETRY} THEN NULL ELSE now() END,
           worker_id = CASE WHEN {_RETRY} THEN NULL ELSE t.worker_id END,
           lease_expires_at = NULL, updated_at = now()
      FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::float8[])
           AS o(id, attempt, status, result, error, retry_in_s)
     WHERE t.id = o.id AND t.attempts = o.attempt
       AND (t.status || '') = 'processing' AND t.worker_id = $7
 RETURNING t.status, t.id, t.queue, t.priority + t.fair_level,
           extract(epoch FROM t.run_at)::float8, t.kind, t.owner, t.attempts
"""


def _task_id(outcome: Outcome) -> uuid.UUID:
    return outcome.task_id


async def finish(*, conn: Any, outcomes: Sequence[Outcome], worker_id: str) -> list[Recorded]:
    """Record many outcomes in one statement. An attempt this worker no longer
    owns (its lease was lost and the task reclaimed) is not overwritten.

    In id order, as the heartbeat's renewal takes its rows: two statements that
    lock the same rows in one order do not deadlock."""
    outcomes = sorted(outcomes, key=_task_id)
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
    return [recorded_from(row) for row in rows]


_RELEASE = f"""
    UPDATE tasks
       SET status = CASE WHEN cancel_requested THEN 'canceled' ELSE 'pending' END,
           attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END,
           started_at = CASE WHEN cancel_requested THEN started_at END,
           finished_at = CASE WHEN cancel_requested THEN now() END,
           worker_id = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = ANY($1::uuid[]) AND (status || '') = 'processing' AND worker_id = $2
 RETURNING {RECORDED_COLUMNS}
"""


async def release(*, conn: Any, ids: Sequence[uuid.UUID], worker_id: str) -> list[Recorded]:
    """Give claimed tasks back (shutdown): their interrupted attempt does not count.
    They are pending again, except a task whose cancel was asked for: canceled."""
    rows = await conn.fetch(_RELEASE, list(ids), worker_id)
    return [recorded_from(row) for row in rows]


_EXTEND_LEASES = """
    UPDATE tasks SET lease_expires_at = now() + make_interval(secs => $3)
     WHERE id = ANY($2::uuid[]) AND (status || '') = 'processing' AND worker_id = $1
       AND lease_expires_at > now()
 RETURNING id, cancel_requested
"""


async def extend_leases(
    *, conn: Any, worker_id: str, ids: Sequence[uuid.UUID], lease_s: float
) -> Renewal:
    """Renew the leases of the tasks this worker still holds, in one statement. A
    lease that has already expired is not renewed: the task may be someone else's."""
    rows = await conn.fetch(_EXTEND_LEASES, worker_id, sorted(ids), lease_s)
    return Renewal({row[0] for row in rows}, [row[0] for row in rows if row[1]])
