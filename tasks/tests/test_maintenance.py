"""The reconcile sweep finds every lost doorbell, whatever waits before it, and
rebuilds a lost backlog quickly and in the order workers take it."""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest

from app.ids import uuid7
from app.lifespan import Resources
from tasks.doorbell import Doorbell
from tasks.repository import bell_of_row
from tasks.tests.fixtures import WorkerFactory, wait_status
from tasks.worker import maintenance

_INSERT = """
    INSERT INTO tasks (id, kind, message, queue, priority, run_at, updated_at)
    SELECT id, 'echo', 'backlog', $2, (n % 10)::smallint,
           now() - interval '10 min', now() - interval '10 min'
      FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)
 RETURNING *
"""


async def insert_pending(db: asyncpg.Connection, count: int, queue: str) -> list[asyncpg.Record]:
    """Pending, due tasks untouched for ten minutes, priorities 0..9, no doorbell rung."""
    return list(await db.fetch(_INSERT, [uuid7() for _ in range(count)], queue))


async def test_lost_doorbells_are_found_behind_a_backlog_nobody_serves(
    resources: Resources, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    # 5,000 older tasks rung in a queue no worker serves, then 100 whose doorbell
    # was lost in the queue the worker serves. A sweep that looks at the oldest
    # stale tasks only would find the 5,000 rung and never reach the 100.
    unserved = await insert_pending(db, 5_000, "emails")
    await Doorbell(resources).ring(bell_of_row(row) for row in unserved)
    lost = [str(row["id"]) for row in await insert_pending(db, 100, "default")]

    # The default reconcile settings: the README's bound is one minute with them.
    await start_worker(reconcile_interval_s=5.0, reconcile_grace_s=5.0)
    await wait_status(db, lost, "completed", timeout_s=60)

    assert await resources.redis.zcard(resources.keys.ready("emails")) == 5_000
    pending = "SELECT count(*) FROM tasks WHERE queue = 'emails' AND status = 'pending'"
    assert await db.fetchval(pending) == 5_000


async def test_a_flushed_backlog_is_rung_again_within_seconds_in_priority_order(
    resources: Resources, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = await insert_pending(db, 100_000, "default")
    by_id = {row["id"]: row["priority"] for row in rows}
    ready = resources.keys.ready("default")
    doorbell = Doorbell(resources)
    started = time.monotonic()

    # One chunk first: what the workers can already take while the walk goes on.
    with monkeypatch.context() as patch:
        patch.setattr(maintenance, "CHECK_MAX", maintenance.CHECK_BATCH)
        await maintenance.ring_lost(resources.engine, doorbell, grace_s=5.0)
    first = [by_id[uuid.UUID(member)] for member in await resources.redis.zrange(ready, 0, -1)]
    # The walk goes in the order workers take tasks: the first chunk holds the
    # most urgent ones (10,000 tasks have priority 0).
    assert len(first) == maintenance.CHECK_BATCH and set(first) == {0}

    while await resources.redis.zcard(ready) < len(rows):
        assert time.monotonic() - started < 30, "the backlog was not rebuilt within 30 s"
        await maintenance.ring_lost(resources.engine, doorbell, grace_s=5.0)

    members = await resources.redis.zrange(ready, 0, -1)
    popped = [by_id[uuid.UUID(member)] for member in members]
    assert popped == sorted(popped) and len(set(members)) == len(rows)
    # Rung already: the next sweep finds nothing to ring.
    assert await maintenance.ring_lost(resources.engine, doorbell, grace_s=5.0) == 0


async def test_a_walk_longer_than_one_sweep_goes_on_where_it_stopped(
    resources: Resources, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "CHECK_BATCH", 100)
    monkeypatch.setattr(maintenance, "CHECK_MAX", 300)
    rows = await insert_pending(db, 1_000, "default")
    doorbell = Doorbell(resources)

    rung = [await maintenance.ring_lost(resources.engine, doorbell, grace_s=5) for _ in range(5)]

    assert rung == [300, 300, 300, 100, 0]
    assert await resources.redis.zcard(resources.keys.ready("default")) == len(rows)
    # The cursor lives in Redis, so the next sweep may run on any worker; losing
    # it only starts the walk over.
    await resources.redis.delete(resources.keys.sweep_cursor)
    await resources.redis.delete(resources.keys.ready("default"))
    assert await maintenance.ring_lost(resources.engine, doorbell, grace_s=5) == 300
