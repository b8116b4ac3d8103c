"""How fast are the status filters of GET /tasks, and the reconcile's walk,
with a million rows in the table, whatever the mix of statuses?

Mixes (1,000,000 rows each, ids time-ordered over the last 30 days):
  recent-failures  99% completed, 1% failed spread over the last day
  old-failures     92% completed, 8% failed, none newer than 15 days
  backlog          900,000 finished, 100,000 pending (10% of them scheduled)
  all-statuses     every status, in equal parts, spread evenly

For each mix and status: GET /tasks?status=S (first page and a page deep in
the history, through the route, in-process over ASGI), p50 and p99 of
`--runs` calls, and the plan PostgreSQL chose. Then the reconcile's walk over
the pending tasks (a whole sweep, with nothing to ring) and one retention
statement.

    .venv/bin/python bench/backlog.py [--rows 1000000] [--runs 20] [--mix NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
from common import Stack, percentile, stack

from app.config import Settings
from app.lifespan import Resources
from main import create_app
from tasks.doorbell import Doorbell
from tasks.worker import maintenance

# What GET /tasks?status=S sends (see tasks/repository/api.py: list_tasks).
LIST_FIRST = """
    SELECT * FROM tasks WHERE id = ANY(ARRAY(
        SELECT id FROM tasks WHERE status = $1 ORDER BY id DESC LIMIT $2))
     ORDER BY id DESC"""
LIST_AFTER = """
    SELECT * FROM tasks WHERE id = ANY(ARRAY(
        SELECT id FROM tasks WHERE status = $1 AND id < $2::uuid ORDER BY id DESC LIMIT $3))
     ORDER BY id DESC"""
STATUSES = ("pending", "processing", "completed", "failed", "canceled", "expired")

# Rows straight from SQL: `share(status)` picks statuses by the row number, and
# the id is a UUIDv7 of the row's created_at, so the id order is time order.
_FILL = """
    INSERT INTO tasks (id, kind, message, status, queue, priority, attempts, run_at,
                       created_at, updated_at, started_at, finished_at)
    SELECT (lpad(to_hex((extract(epoch FROM c) * 1000)::bigint), 12, '0') || '7'
            || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid,
           'echo', 'bench', s, (ARRAY['default', 'emails', 'reports'])[1 + g % 3], g % 10,
           CASE WHEN s = 'pending' THEN 0 ELSE 1 END,
           CASE WHEN s = 'pending' AND g % 10 = 0 THEN now() + interval '1 hour' ELSE c END,
           c, c, CASE WHEN s = 'pending' THEN NULL ELSE c END,
           CASE WHEN s IN ('pending', 'processing') THEN NULL ELSE c END
      FROM generate_series(1, $1) AS g,
           LATERAL (SELECT {created} AS c, {status} AS s) AS r
"""
MIXES: dict[str, tuple[str, str]] = {
    # (created_at of row g of n, status of row g)
    "recent-failures": (
        "now() - interval '30 days' * (1 - g::float8 / $1)",
        "CASE WHEN g % 100 = 0 AND g > $1 * 0.96 THEN 'failed' ELSE 'completed' END",
    ),
    "old-failures": (
        "now() - interval '30 days' * (1 - g::float8 / $1)",
        "CASE WHEN g % 6 = 0 AND g < $1 * 0.5 THEN 'failed' ELSE 'completed' END",
    ),
    "backlog": (
        "now() - interval '30 days' * (1 - g::float8 / $1)",
        "CASE WHEN g > $1 * 0.9 THEN 'pending' ELSE 'completed' END",
    ),
    "all-statuses": (
        "now() - interval '30 days' * (1 - g::float8 / $1)",
        "(ARRAY['pending','processing','completed','failed','canceled','expired'])[1 + g % 6]",
    ),
}


async def load(conn: asyncpg.Connection, mix: str, rows: int) -> dict[str, int]:
    created, status = MIXES[mix]
    await conn.execute("TRUNCATE tasks, task_counts, task_count_changes")
    await conn.execute(_FILL.format(created=created, status=status), rows)
    await conn.execute("VACUUM ANALYZE tasks")
    counts = await conn.fetch("SELECT status, count(*) FROM tasks GROUP BY 1 ORDER BY 1")
    return {row[0]: row[1] for row in counts}


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    """p50 and p99 in ms of `runs` calls, after five warm-up calls (past the
    point where PostgreSQL may switch a prepared statement to a generic plan)."""
    for _ in range(6):
        await call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 0.5), percentile(samples, 0.99)


async def plan(conn: asyncpg.Connection, status: str, before: str | None) -> str:
    """The plan of the list statement, as a generic (prepared) plan would be."""
    sql = LIST_AFTER if before else LIST_FIRST
    # Literals from this script only (a status name, a uuid): EXECUTE takes no $n.
    args = f"'{status}', '{before}', 51" if before else f"'{status}', 51"
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE listing AS {sql}")
        try:
            lines = await conn.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE listing({args})")
        finally:
            await conn.execute("DEALLOCATE listing")
    return " / ".join(line[0].strip() for line in lines if "Scan" in line[0])


async def statuses(http: httpx.AsyncClient, conn: asyncpg.Connection, runs: int) -> float:
    worst = 0.0
    for status in STATUSES:
        deep = await conn.fetchval(
            "SELECT id::text FROM tasks WHERE status = $1 ORDER BY id DESC OFFSET 5000 LIMIT 1",
            status,
        )
        for label, cursor in (("first page", None), ("page 100", deep)):
            params = {"status": status, "limit": 50}
            if cursor:
                params["cursor"] = await _cursor_for(http, status, cursor)

            async def call(params: dict[str, Any] = params) -> None:
                (await http.get("/tasks", params=params)).raise_for_status()

            p50, p99 = await timed(call, runs)
            worst = max(worst, p50)
            scan = await plan(conn, status, cursor)
            print(f"  {status:10} {label:10}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms   {scan}")
    return worst


async def _cursor_for(http: httpx.AsyncClient, status: str, task_id: str) -> str:
    """The API's cursor is opaque: walk to it by following next_cursor from the first page."""
    params: dict[str, Any] = {"status": status, "limit": 500}
    for _ in range(20):
        page = (await http.get("/tasks", params=params)).json()
        if not page["next_cursor"] or any(item["id"] == task_id for item in page["items"]):
            break
        params["cursor"] = page["next_cursor"]
    return str(params.get("cursor", ""))


async def sweeps(resources: Resources, conn: asyncpg.Connection) -> None:
    """One whole walk over the pending tasks when every doorbell is there (the
    steady state), from the start; then one expiry and retention sweep."""
    doorbell = Doorbell(resources)
    pending = await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'pending'")
    for _ in range(pending // maintenance.CHECK_MAX + 2):  # ring what is lost, all of it
        await maintenance.ring_lost(resources.engine, doorbell, grace_s=5)
    await resources.redis.delete(resources.keys.sweep_cursor)
    chunks, started = 0, time.perf_counter()
    while True:
        chunks += 1
        await maintenance.ring_lost(resources.engine, doorbell, grace_s=5)
        if await doorbell.sweep_cursor() is None:
            break
    walk_ms = (time.perf_counter() - started) * 1000
    per_chunk = walk_ms / max(1, -(-pending // maintenance.CHECK_BATCH))
    print(
        f"  reconcile walk over {pending:,} pending tasks, all rung: {walk_ms:.0f} ms in"
        f" {chunks} sweep(s), {per_chunk:.1f} ms per {maintenance.CHECK_BATCH:,}-task chunk"
    )
    started = time.perf_counter()
    await maintenance.sweep_finished(resources.engine, resources, doorbell)
    print(f"  expiry + retention sweep: {(time.perf_counter() - started) * 1000:.0f} ms")


async def main(found: Stack, rows: int, runs: int, mixes: list[str]) -> None:
    settings = Settings(
        _env_file=None,
        database_url=found.database_url,
        redis_url=found.redis_url,
        redis_queue_name=found.namespace,
    )
    app = create_app(settings)
    conn = await asyncpg.connect(found.dsn)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                for mix in mixes:
                    counts = await load(conn, mix, rows)
                    print(f"\n{mix}: {', '.join(f'{n:,} {s}' for s, n in counts.items())}")
                    worst = await statuses(http, conn, runs)
                    print(f"  slowest p50: {worst:.1f} ms")
                    await sweeps(app.state.resources, conn)
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mix", choices=sorted(MIXES), action="append")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with stack() as found:
        asyncio.run(main(found, args.rows, args.runs, args.mix or list(MIXES)))
