"""What does a /metrics scrape cost in declared queues' messages, with a million rows?

Declared queues get per-queue message gauges (undelivered, leased, dead, the
oldest unacked message's age). Undelivered and leased come from the
trigger-kept counts (see bench/queues.py); this times the statement that reads
the rest for every declared queue (topics.repository.message_summaries: the
dead letters from the same counts, migration 0012, and the oldest unacked
message from two index lookups), and the HTTP consumers' leases the dashboard
shows, with EXPLAIN (ANALYZE, BUFFERS), in three scenarios:

A: 1,000,000 acked (completed) messages over 10 queues, 1,000 active ones, a
   few dead letters (a long history, short queues)
B: 1,000,000 dead letters: half failed in a queue without a dead queue, half
   waiting in a dead queue (a neglected dead queue)
C: 1,000,000 undelivered messages in one queue (a big backlog)

    .venv/bin/python bench/topic_metrics.py [--rows 1000000] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from common import Stack, percentile, stack

from topics.repository.stats import _LEASING_CONSUMERS, _SUMMARIES, MAX_SUMMARIES

COLUMNS = [
    "id", "kind", "message", "payload", "status", "queue", "priority", "attempts",
    "run_at", "created_at", "updated_at", "started_at", "finished_at", "dead_from", "worker_id",
]  # fmt: skip
CHUNK = 100_000
QUEUES = [f"q{i}" for i in range(10)]

Row = tuple[Any, ...]


def message(status: str, queue: str, now: datetime, rng: random.Random, dead_from: Any) -> Row:
    created = now - timedelta(seconds=rng.uniform(1, 86400))
    started = finished = None
    attempts = 0
    if status in ("processing", "completed", "failed"):
        started, attempts = created + timedelta(seconds=1), 1
    if status in ("completed", "failed"):
        finished = created + timedelta(seconds=2)
    # time-ordered ids, as uuid7 makes them: the oldest message comes first by id
    ms = int(created.timestamp() * 1000)
    task_id = uuid.UUID(int=(ms << 80) | (7 << 76) | rng.getrandbits(76))
    return (
        task_id, "message", "bench", "{}", status, queue, 5, attempts, created, created,
        finished or started or created, started, finished, dead_from,
        f"http:bench-{rng.randrange(3)}:0123456789ab" if status == "processing" else None,
    )  # fmt: skip


def rows(spec: list[tuple[str, str, Any, int]]) -> Iterator[Row]:
    rng, now = random.Random(42), datetime.now(UTC)
    for status, queue, dead_from, count in spec:
        for index in range(count):
            name = queue if queue != "*" else QUEUES[index % len(QUEUES)]
            yield message(status, name, now, rng, dead_from)


async def load(conn: asyncpg.Connection, spec: list[tuple[str, str, Any, int]]) -> float:
    started = time.perf_counter()
    await conn.execute("TRUNCATE tasks, task_counts, task_count_changes")
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


async def scenario(name: str, spec: list[tuple[str, str, Any, int]], dsn: str, runs: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        load_s = await load(conn, spec)
        print(f"\n{name}: " + ", ".join(f"{n:,} {s} in {q}" for s, q, _, n in spec))
        print(f"  COPY + VACUUM ANALYZE {load_s:.1f}s")
        await conn.fetch(_SUMMARIES, MAX_SUMMARIES, None)
        samples = []
        for _ in range(runs):
            began = time.perf_counter()
            found = await conn.fetch(_SUMMARIES, MAX_SUMMARIES, None)
            samples.append((time.perf_counter() - began) * 1000)
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        print(f"  message_summaries x{runs}: p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
        shown = {r["queue"]: (r["dead"], round(r["oldest_unacked_age_s"] or 0)) for r in found}
        print(f"  (dead, oldest unacked age s) per queue: {shown}")
        await explain(conn, _SUMMARIES, MAX_SUMMARIES, None)
        began = time.perf_counter()
        leasing = await conn.fetch(_LEASING_CONSUMERS, MAX_SUMMARIES)
        print(
            f"  leasing_consumers: {(time.perf_counter() - began) * 1000:.1f} ms,"
            f" {sum(r['leased'] for r in leasing)} leased"
        )
        await explain(conn, _LEASING_CONSUMERS, MAX_SUMMARIES)
    finally:
        await conn.close()


async def explain(conn: asyncpg.Connection, sql: str, *args: Any) -> None:
    for line in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args):
        if not line[0].lstrip().startswith(("Buffers", "Planning", "Index Searches")):
            print("    " + line[0].rstrip())


async def declare(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO queues (id) VALUES ('dead')")
        for queue in QUEUES:
            await conn.execute("INSERT INTO queues (id, dead_queue_id) VALUES ($1, 'dead')", queue)
    finally:
        await conn.close()


async def main(found: Stack, total: int, runs: int) -> None:
    await declare(found.dsn)
    history = [("completed", "*", None, total), ("pending", "*", None, 600),
               ("processing", "*", None, 400), ("failed", "*", None, 50)]  # fmt: skip
    await scenario("A", history, found.dsn, runs)
    dead = [("failed", "q0", None, total // 2), ("pending", "dead", "q1", total - total // 2)]
    await scenario("B", dead, found.dsn, runs)
    await scenario("C", [("pending", "q2", None, total)], found.dsn, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with stack() as found:
        asyncio.run(main(found, args.rows, args.runs))
