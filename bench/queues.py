"""How fast is GET /queues with a million rows in the table?

Scenario A: 1,000,000 finished rows and 1,000 active ones (the usual case: a
long history, a short queue). Scenario B: 1,000,000 pending rows over 3 queues
and 10 priorities (a big backlog). Rows are bulk-loaded with COPY, then
VACUUM ANALYZE; the queue SQL (repository.QUEUE_COUNTS) and the whole route
(in-process, over ASGI, with Redis) are each timed 20 times, and the plan of
the SQL is shown with EXPLAIN (ANALYZE, BUFFERS).

    .venv/bin/python bench/queues.py [--rows 1000000] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from common import Stack, percentile, stack

from app.config import Settings
from main import create_app
from tasks.repository import QUEUE_COUNTS

QUEUES = ("default", "emails", "reports")
COLUMNS = [
    "id", "kind", "message", "payload", "status", "queue", "priority", "attempts",
    "run_at", "created_at", "updated_at", "started_at", "finished_at",
]  # fmt: skip
CHUNK = 100_000

Row = tuple[Any, ...]


def row(status: str, now: datetime, rng: random.Random) -> Row:
    """One task row; `status` "scheduled" means pending with a run_at ahead."""
    queue, priority = rng.choice(QUEUES), rng.randrange(10)
    created = now - timedelta(seconds=rng.uniform(1, 86400))
    run_at, started, finished, attempts = created, None, None, 0
    if status == "scheduled":
        status, run_at = "pending", now + timedelta(seconds=rng.uniform(60, 3600))
    elif status == "processing":
        started, attempts = created + timedelta(seconds=1), 1
    elif status != "pending":  # finished
        started, attempts = created + timedelta(seconds=1), 1
        finished = started + timedelta(seconds=1)
    return (
        uuid.uuid4(), "echo", "bench", "{}", status, queue, priority, attempts,
        run_at, created, finished or started or created, started, finished,
    )  # fmt: skip


def rows(spec: dict[str, int]) -> Iterator[Row]:
    rng, now = random.Random(42), datetime.now(UTC)
    for status, count in spec.items():
        for _ in range(count):
            yield row(status, now, rng)


async def load(conn: asyncpg.Connection, spec: dict[str, int]) -> float:
    """Empty the table, COPY the rows in, VACUUM ANALYZE; answers the seconds it took."""
    started = time.perf_counter()
    await conn.execute("TRUNCATE tasks")
    batch: list[Row] = []
    for record in rows(spec):
        batch.append(record)
        if len(batch) == CHUNK:
            await conn.copy_records_to_table("tasks", records=batch, columns=COLUMNS)
            batch = []
    if batch:
        await conn.copy_records_to_table("tasks", records=batch, columns=COLUMNS)
    await conn.execute("VACUUM ANALYZE tasks")
    return time.perf_counter() - started


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    """p50 and p99 in ms of `runs` calls, after one warm-up call."""
    await call()
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 0.50), percentile(samples, 0.99)


async def explain(conn: asyncpg.Connection) -> None:
    plan = [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + QUEUE_COUNTS)]
    for line in plan:
        if not line.lstrip().startswith(("Sort Method", "Planning:")):
            print("    " + line.rstrip())
    index_only = any("Index Only Scan using ix_tasks_active_queue" in line for line in plan)
    print(f"    index-only scan of ix_tasks_active_queue: {'yes' if index_only else 'NO'}")


async def scenario(
    name: str, spec: dict[str, int], found: Stack, http: httpx.AsyncClient, runs: int
) -> None:
    conn = await asyncpg.connect(found.dsn)
    try:
        load_s = await load(conn, spec)
        size = await conn.fetchval("SELECT pg_relation_size('ix_tasks_active_queue')")
        print(f"\n{name}: {', '.join(f'{n:,} {s}' for s, n in spec.items())}")
        print(f"  COPY + VACUUM ANALYZE {load_s:.1f}s; the index is {size / 2**20:.1f} MiB")
        groups = await conn.fetch(QUEUE_COUNTS)
        print(f"  {len(groups)} (queue, priority) groups")
        p50, p99 = await timed(lambda: conn.fetch(QUEUE_COUNTS), runs)
        print(f"  SQL QUEUE_COUNTS  x{runs}: p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")

        async with conn.transaction():  # the same SQL, the planner made to use the index
            await conn.execute("SET LOCAL enable_seqscan = off")
            p50, p99 = await timed(lambda: conn.fetch(QUEUE_COUNTS), runs)
        print(f"  same, seqscan off  x{runs}: p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")

        async def route() -> None:
            response = await http.get("/queues")
            response.raise_for_status()

        p50, p99 = await timed(route, runs)
        print(f"  GET /queues        x{runs}: p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
        answer = (await http.get("/queues")).json()["queues"]
        totals = {q["name"]: (q["ready"], q["scheduled"], q["processing"]) for q in answer}
        print(f"  (ready, scheduled, processing) per queue: {totals}")
        print("  EXPLAIN (ANALYZE, BUFFERS):")
        await explain(conn)
    finally:
        await conn.close()


async def main(found: Stack, total: int, runs: int) -> None:
    settings = Settings(
        _env_file=None,
        database_url=found.database_url,
        redis_url=found.redis_url,
        redis_queue_name=found.namespace,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            finished = {"completed": total * 9 // 10, "failed": total - total * 9 // 10}
            active = {"pending": 600, "scheduled": 200, "processing": 200}
            await scenario("A", {**finished, **active}, found, http, runs)
            backlog = {"pending": total * 9 // 10, "scheduled": total - total * 9 // 10}
            await scenario("B", backlog, found, http, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with stack() as found:
        asyncio.run(main(found, args.rows, args.runs))
