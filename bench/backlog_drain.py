"""Does a backlog slow the worker down or make it grow?

One worker (10 slots, WORKER_QUEUES=default) drains 20,000 no-op tasks of
`default` on an empty table, then again with a history of finished tasks and
a growing backlog of pending tasks in a queue it does not serve (they stay
pending; the reconcile still walks them and keeps their doorbells). After each
drain: the rate, the worker's CPU per task, and its resident memory.

    .venv/bin/python bench/backlog_drain.py [--tasks 20000] [--finished 1000000]
                                            [--backlogs 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg
import psutil
from common import Stack, stack, start_worker
from drain import cpu_s, ring, store, wait_workers

# Rows straight from SQL, ids time-ordered (a UUIDv7 of created_at), in bulk.
_FILL = """
    INSERT INTO tasks (id, kind, message, status, queue, attempts, run_at, created_at,
                       updated_at, started_at, finished_at)
    SELECT (lpad(to_hex((extract(epoch FROM c) * 1000)::bigint), 12, '0') || '7'
            || substr(md5($4 || g::text), 1, 3) || '8' || substr(md5($4 || g::text), 4, 15))::uuid,
           'echo', $3::text, $2::text, $3::text,
           CASE WHEN $2::text = 'pending' THEN 0 ELSE 1 END, c, c, c,
           CASE WHEN $2::text = 'pending' THEN NULL ELSE c END,
           CASE WHEN $2::text = 'pending' THEN NULL ELSE c END
      FROM generate_series(1, $1) AS g,
           LATERAL (SELECT now() - interval '20 days' * (1 - g::float8 / $1) AS c) AS r
"""
# Progress is polled by id, only for the tasks not yet seen completed: a count
# over the table would scan the whole history on every poll and compete with
# the drain it measures for the same two cores.
_COMPLETED_AMONG = "SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'completed'"
_SPAN = """
    SELECT extract(epoch FROM max(finished_at) - min(started_at))
      FROM tasks WHERE id = ANY($1::uuid[])
"""


async def fill(found: Stack, rows: int, status: str, queue: str) -> None:
    conn = await asyncpg.connect(found.dsn)
    try:
        await conn.execute(
            _FILL, rows, status, queue, uuid.uuid4().hex
        )  # ids unlike earlier fills'
        await conn.execute("VACUUM ANALYZE tasks")
        # The fill's WAL flushed now, not by a checkpoint in the middle of the drain.
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def drain_once(found: Stack, count: int) -> tuple[int, float]:
    """Store `count` tasks of `default`, ring them, wait until all completed."""
    conn = await asyncpg.connect(found.dsn)
    try:
        await conn.execute("DELETE FROM tasks WHERE queue = 'default' AND message = 'bench'")
        ids = await store(found, count)
        await ring(found, ids)
        remaining = set(ids)
        deadline = time.monotonic() + 600
        while remaining and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            done = await conn.fetch(_COMPLETED_AMONG, list(remaining))
            remaining.difference_update(row[0] for row in done)
        span_s = await conn.fetchval(_SPAN, ids)
        return count - len(remaining), float(span_s or 0)
    finally:
        await conn.close()


def measure(found: Stack, worker: psutil.Process, label: str, count: int) -> None:
    before = cpu_s([worker])
    completed, span_s = asyncio.run(drain_once(found, count))
    cpu_ms = (cpu_s([worker]) - before) * 1000 / max(completed, 1)
    rss_mib = worker.memory_info().rss / 2**20
    rate = completed / span_s if span_s else 0.0
    print(
        f"{label:<44} {rate:>7,.0f} tasks/s  worker CPU {cpu_ms:.3f} ms/task"
        f"  RSS {rss_mib:.1f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--backlogs", default="10000,100000,1000000")
    args = parser.parse_args()
    backlogs = [int(n) for n in args.backlogs.split(",")]
    with stack() as found:
        process = start_worker(found, WORKER_QUEUE_MAXSIZE="10", WORKER_QUEUES="default")
        try:
            asyncio.run(wait_workers(found, 1))
            worker = psutil.Process(process.pid)
            measure(found, worker, "empty table (first drain, warming up)", args.tasks)
            measure(found, worker, "empty table", args.tasks)
            asyncio.run(fill(found, args.finished, "completed", "history"))
            measure(found, worker, f"+ {args.finished:,} finished", args.tasks)
            pending = 0
            for backlog in backlogs:
                asyncio.run(fill(found, backlog - pending, "pending", "backlog"))
                pending = backlog
                time.sleep(3)  # the reconcile finds and rings the new backlog
                measure(
                    found, worker, f"+ {args.finished:,} finished, {backlog:,} pending", args.tasks
                )
        finally:
            process.terminate()
            process.wait(60)


if __name__ == "__main__":
    main()
