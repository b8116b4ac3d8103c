"""New tasks, many in one statement: the intake's batches of POSTs, a
POST /tasks/batch, the schedules' ticks, published messages, workflow steps.

A group is one INSERT ... SELECT FROM unnest(...) that returns only what
PostgreSQL decides (the times); each row answered is built from what was sent
(fresh_row). A lone task is one row of VALUES. A large group without
idempotency keys is copied instead (COPY, binary): it neither reads keys nor
needs RETURNING, and the copy costs both sides less.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

from pydantic_core import to_json

_INSERT_INTO = """
    INSERT INTO tasks (id, kind, message, payload, max_attempts, timeout_seconds, run_at,
                       idempotency_key, request_hash, expires_at, queue, priority,
                       fair_level, owner, workflow_id, inputs)"""
_INSERT_TEMPLATE = (
    _INSERT_INTO
    + """
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
)
# ON CONFLICT makes every row a speculative insertion (one more WAL record and
# a check of the keys' index each), which only a row with a key can need: an
# INSERT of tasks without keys took about 8% less time without it.
_ON_KEY_TAKEN = "ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
_INSERT_KEYED = _INSERT_TEMPLATE.format(on_conflict=_ON_KEY_TAKEN)
_INSERT_UNKEYED = _INSERT_TEMPLATE.format(on_conflict="")
# One task (a lone POST, the intake's usual group below a few hundred a
# second) as one row of VALUES: 0.46 ms against 0.54 for unnest(...) of 16
# one-element arrays, on the path from a POST to its handler.
_INSERT_ONE_TEMPLATE = (
    _INSERT_INTO
    + """
    VALUES ($1::uuid, $2::text, $3::text, $4::jsonb, $5::int, $6::float8,
            greatest(coalesce($7::timestamptz, now()), now()), $8::text, $9::text,
            $10::timestamptz, $11::text, $12::int, $13::int, $14::text, $15::uuid, $16::jsonb)
       {on_conflict}
 RETURNING id, run_at, created_at
"""
)
_INSERT_ONE_KEYED = _INSERT_ONE_TEMPLATE.format(on_conflict=_ON_KEY_TAKEN)
_INSERT_ONE_UNKEYED = _INSERT_ONE_TEMPLATE.format(on_conflict="")

# From this many tasks without keys, a group is copied. 1,000 tasks: 15.7 ms
# against 21.9 ms for the INSERT, and 4.3 ms of the caller's CPU against 9.8
# (asyncpg checks every element of the INSERT's 16 arrays); below ~100 the
# copy's three more round trips (BEGIN, now(), COMMIT) cost more than it saves.
COPY_FROM = 100
_COPIED = (
    "id", "kind", "message", "payload", "max_attempts", "timeout_seconds", "run_at",
    "request_hash", "expires_at", "queue", "priority", "fair_level", "owner", "workflow_id",
    "inputs",
)  # fmt: skip


# Columns a task usually leaves NULL (their default): a group where every task
# does is copied without them, a third less for asyncpg to encode and for
# PostgreSQL to parse.
_NULLABLE = ("request_hash", "expires_at", "owner", "workflow_id", "inputs")
_COPIED_SET = tuple(column for column in _COPIED if column not in _NULLABLE)
# A slice whose tasks are all due now leaves run_at to its default, now(): a
# timestamptz took asyncpg about 1 µs to encode, half of a row's.
_COPIED_NOW = tuple(column for column in _COPIED_SET if column != "run_at")


def _has_nullable(t: Any) -> bool:
    return not (
        t.request_hash is None and t.expires_at is None and t.owner is None
        and t.workflow_id is None and t.inputs is None
    )  # fmt: skip


Meanwhile = Callable[[list[dict[str, Any]]], None]  # given the rows while they are copied


async def insert_tasks(
    *,
    conn: Any,
    tasks: Sequence[Any],
    meanwhile: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Many new tasks in one statement, as whole rows. A task whose idempotency
    key is taken is not inserted (and not returned). `conn`: asyncpg's, with
    the jsonb codec the engine sets (app/db.py). `meanwhile`: given the rows
    while PostgreSQL copies them, when the group is copied (never called
    otherwise); it must not raise."""
    keyed = any(t.idempotency_key is not None for t in tasks)
    if len(tasks) == 1:
        return await _insert_one(conn, tasks[0], keyed)
    if not keyed and len(tasks) >= COPY_FROM:
        return await _copy_tasks(conn, tasks, meanwhile)
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


async def _insert_one(conn: Any, task: Any, keyed: bool) -> list[dict[str, Any]]:
    made = await conn.fetchrow(
        _INSERT_ONE_KEYED if keyed else _INSERT_ONE_UNKEYED,
        task.id, task.kind, task.message, _json(task.payload), task.max_attempts,
        task.timeout_seconds, task.run_at, task.idempotency_key, task.request_hash,
        task.expires_at, task.queue, task.priority, task.fair_level, task.owner,
        task.workflow_id, None if task.inputs is None else _json(task.inputs),
    )  # fmt: skip
    return [] if made is None else [fresh_row(task, run_at=made[1], created_at=made[2])]


async def _copy_tasks(
    conn: Any, tasks: Sequence[Any], meanwhile: Meanwhile | None
) -> list[dict[str, Any]]:
    async with conn.transaction():
        return await copy_slices(conn=conn, slices=[tasks], meanwhile=meanwhile)


async def copy_slices(
    *, conn: Any, slices: Iterable[Sequence[Any]], meanwhile: Meanwhile | None = None
) -> list[dict[str, Any]]:
    """Tasks without idempotency keys, copied a slice at a time in the caller's
    transaction, whose now() is every row's created_at (the column's default),
    read first (while the first slice is made) to answer the rows. While
    PostgreSQL copies a slice, the rows answered for it (and what `meanwhile`
    makes of them) are built and the next slice is made: `slices` may be lazy
    (a large POST /tasks/batch validates and builds its items as they are
    pulled). One batch at a time, that CPU would otherwise come on top of the
    COPY's wait. One command at a time: asyncpg runs one per connection."""
    pending = iter(slices)
    reading: asyncio.Future[Any] = asyncio.ensure_future(conn.fetchval("SELECT now()"))
    copying: asyncio.Future[Any] | None = None
    rows: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(0)  # the query is out: PostgreSQL answers while the slice is made
        first = next(pending, ())
        now = await reading
        for tasks in chain([first], pending):  # the next slice is made while the last is copied
            if not tasks:
                continue
            # As the INSERT's greatest(coalesce(run_at, now()), now()): never in the past.
            run_at = [now if t.run_at is None or t.run_at < now else t.run_at for t in tasks]
            columns, records = _records(tasks, run_at, now)
            if copying is not None:
                await copying
            copying = asyncio.ensure_future(
                conn.copy_records_to_table("tasks", columns=columns, records=records)
            )
            await asyncio.sleep(0)  # the COPY encodes and sends its rows: PostgreSQL works
            made = [fresh_row(t, run_at=due, created_at=now)
                    for t, due in zip(tasks, run_at, strict=True)]  # fmt: skip
            rows += made
            if meanwhile is not None:
                meanwhile(made)
        if copying is not None:
            await copying
    except BaseException:
        # Nothing is committed: the caller's transaction rolls back once the
        # connection's command is over.
        await _stop(reading, copying)
        raise
    return rows


async def _stop(*futures: asyncio.Future[Any] | None) -> None:
    running = [future for future in futures if future is not None]
    for future in running:
        future.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def _records(
    tasks: Sequence[Any], run_at: list[datetime], now: datetime
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The columns to copy and each task's values for them: those every task
    leaves at its default are left out."""
    if any(_has_nullable(t) for t in tasks):
        return _COPIED, [
            (t.id, t.kind, t.message, _json(t.payload), t.max_attempts, t.timeout_seconds,
             due, t.request_hash, t.expires_at, t.queue, t.priority, t.fair_level, t.owner,
             t.workflow_id, None if t.inputs is None else _json(t.inputs))
            for t, due in zip(tasks, run_at, strict=True)
        ]  # fmt: skip
    if any(due is not now for due in run_at):
        return _COPIED_SET, [
            (t.id, t.kind, t.message, _json(t.payload), t.max_attempts, t.timeout_seconds,
             due, t.queue, t.priority, t.fair_level)
            for t, due in zip(tasks, run_at, strict=True)
        ]  # fmt: skip
    return _COPIED_NOW, [
        (t.id, t.kind, t.message, _json(t.payload), t.max_attempts, t.timeout_seconds,
         t.queue, t.priority, t.fair_level)
        for t in tasks
    ]  # fmt: skip


# Every column of a new task, in the table's order, at its default: fresh_row
# copies it and sets what the task and PostgreSQL decided (1.0 µs a row against
# 1.6 for the whole literal).
_NEW_ROW: dict[str, Any] = dict.fromkeys(
    ("id", "kind", "message", "payload", "status", "result", "error", "errors", "attempts",
     "max_attempts", "redrives", "timeout_seconds", "run_at", "expires_at",
     "lease_expires_at", "worker_id", "queue", "priority", "fair_level", "owner",
     "cancel_requested", "idempotency_key", "request_hash", "workflow_id", "inputs",
     "dead_from", "created_at", "updated_at", "started_at", "finished_at")
) | {"status": "pending", "attempts": 0, "redrives": 0, "cancel_requested": False}  # fmt: skip


def fresh_row(task: Any, *, run_at: datetime, created_at: datetime) -> dict[str, Any]:
    """The row an INSERT of `task` stored, without reading it back: what was
    sent, the columns' defaults for a new task, and the times PostgreSQL set.
    Decoding 1,000 whole rows (RETURNING *) cost the API about 9 ms of its
    75 ms for a batch. test_repository holds this to what `SELECT *` reads."""
    row = _NEW_ROW.copy()
    row.update(
        id=task.id, kind=task.kind, message=task.message, payload=task.payload, errors=[],
        max_attempts=task.max_attempts, timeout_seconds=task.timeout_seconds, run_at=run_at,
        expires_at=task.expires_at, queue=task.queue, priority=task.priority,
        fair_level=task.fair_level, owner=task.owner, idempotency_key=task.idempotency_key,
        request_hash=task.request_hash, workflow_id=task.workflow_id, inputs=task.inputs,
        created_at=created_at, updated_at=created_at,
    )  # fmt: skip
    return row


def _json(value: Any) -> str:
    if isinstance(value, dict) and not value:  # `{}`, the default payload
        return "{}"
    return to_json(value).decode()  # a tenth of json.dumps' time for a small payload
