"""After Redis lost every doorbell: how fast are the pending tasks rung again,
how fast do the workers drain them, and in what order?

Loads N pending `echo` tasks (priorities 0..9, untouched for ten minutes) with
no doorbell rung, as after a Redis flush, optionally beside a history of
finished rows; starts one worker process with the default reconcile settings
(RECONCILE_INTERVAL_SECONDS=5, RECONCILE_GRACE_SECONDS=5) and watches, every
100 ms, how many tasks are rung (in Redis, running or done) and done.

    .venv/bin/python bench/recovery.py [--tasks 100000] [--finished 0] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
from common import Stack, stack, start_worker
from redis.asyncio import Redis

from app.redis import Keys

SLOTS = 10
_PENDING = """
    INSERT INTO tasks (id, kind, message, priority, run_at, updated_at, created_at)
    SELECT (lpad(to_hex((extract(epoch FROM c) * 1000)::bigint), 12, '0') || '7'
            || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid,
           'echo', 'recover me', g % 10, c, c, c
      FROM generate_series(1, $1) AS g,
           LATERAL (SELECT now() - interval '10 min' + g * interval '1 microsecond' AS c) AS r
"""
_FINISHED = """
    INSERT INTO tasks (id, kind, message, status, attempts, created_at, updated_at,
                       started_at, finished_at)
    SELECT gen_random_uuid(), 'echo', 'history', 'completed', 1, c, c, c, c
      FROM generate_series(1, $1) AS g,
           LATERAL (SELECT now() - interval '20 days' * random() AS c) AS r
"""
_PROGRESS = """
    SELECT count(*) FILTER (WHERE status <> 'pending'),
           count(*) FILTER (WHERE status = 'completed')
      FROM tasks WHERE message = 'recover me'
"""


async def load(conn: asyncpg.Connection, tasks: int, finished: int) -> None:
    if finished:
        await conn.execute(_FINISHED, finished)
    await conn.execute(_PENDING, tasks)
    await conn.execute("VACUUM ANALYZE tasks")


async def watch(found: Stack, conn: asyncpg.Connection, tasks: int, seconds: float) -> None:
    redis = Redis.from_url(found.redis_url)
    ready = Keys(found.namespace).ready("default")
    worker = start_worker(found, LOG_LEVEL="WARNING", WORKER_QUEUE_MAXSIZE=str(SLOTS))
    started, all_rung_s, marks = time.monotonic(), None, [5.0, 10.0, 20.0, 30.0]
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            # Redis first: a task popped meanwhile is then counted twice, never
            # missed; the worker's 10 slots may hold popped ids not yet claimed.
            waiting = int(await redis.zcard(ready))
            taken, done = await conn.fetchrow(_PROGRESS)
            rung = waiting + taken
            if all_rung_s is None and rung >= tasks - SLOTS:
                all_rung_s = elapsed
                print(f"  all rung again after {elapsed:.1f} s ({done:,} done by then)")
            if marks and elapsed >= marks[0]:
                print(f"  t={marks.pop(0):4.0f} s: rung {rung:7,}   done {done:7,}")
            if done >= tasks:
                print(f"  all done after {elapsed:.1f} s: {tasks / elapsed:,.0f} tasks/s overall")
                break
            await asyncio.sleep(0.1)
        await order(conn)
    finally:
        worker.terminate()
        worker.wait(60)
        await redis.aclose()


async def order(conn: asyncpg.Connection) -> None:
    """Priority order while the backlog was rebuilt: of the tasks started so far,
    how many started after a task of a less urgent priority had started."""
    rows = await conn.fetch(
        "SELECT priority FROM tasks WHERE message = 'recover me' AND started_at IS NOT NULL"
        " ORDER BY started_at"
    )
    priorities = [row[0] for row in rows]
    worst, inversions = -1, 0
    for priority in priorities:
        inversions += priority < worst
        worst = max(worst, priority)
    per = {p: priorities.count(p) for p in range(10)}
    print(f"  started per priority: {per}")
    print(f"  started after a less urgent task had started: {inversions:,} of {len(rows):,}")


async def main(found: Stack, tasks: int, finished: int, seconds: float) -> None:
    conn = await asyncpg.connect(found.dsn)
    try:
        await load(conn, tasks, finished)
        print(f"{tasks:,} pending tasks without a doorbell, {finished:,} finished rows")
        await watch(found, conn, tasks, seconds)
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--finished", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with stack() as found:
        asyncio.run(main(found, args.tasks, args.finished, args.seconds))
