"""How fast does one worker (concurrency 10) drain no-op tasks?

Starts one `python worker.py` (with --processes N: WORKER_PROCESSES=N, a
supervisor of N worker processes), inserts N pending `echo` tasks and rings
their doorbells, and measures from the first claim to the last recorded
outcome, as PostgreSQL saw them (every state change committed), and the CPU
time the worker processes spent on them.

    .venv/bin/python bench/drain.py [--tasks 20000] [--concurrency 10] [--processes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg
import psutil
from common import Stack, server_processes, stack, start_worker
from redis.asyncio import Redis

from app.ids import uuid7
from app.redis import Keys

STARTUP_S = 3.0


async def enqueue(found: Stack, count: int, kind: str = "echo") -> None:
    """`count` pending tasks of `kind`, stored in one COPY, then their doorbells rung."""
    await ring(found, await store(found, count, kind))


async def store(found: Stack, count: int, kind: str = "echo") -> list[uuid.UUID]:
    """`count` pending tasks of `kind`, stored in one COPY; no doorbell yet."""
    ids = [uuid7() for _ in range(count)]
    conn = await asyncpg.connect(found.dsn)
    try:
        await conn.copy_records_to_table(
            "tasks",
            records=[(task_id, kind, "bench", "{}") for task_id in ids],
            columns=["id", "kind", "message", "payload"],
        )
    finally:
        await conn.close()
    return ids


async def ring(found: Stack, ids: list[uuid.UUID]) -> None:
    redis = Redis.from_url(found.redis_url)
    ready = Keys(found.namespace).ready("default")
    try:
        for start in range(0, len(ids), 5000):
            # Same rank; the time-ordered ids' own order stands in for ready time.
            await redis.zadd(
                ready, {str(i): n for n, i in enumerate(ids[start : start + 5000], start)}
            )
    finally:
        await redis.aclose()


async def event_entries(found: Stack) -> int:
    """How many entries the event stream was given (a round trip each)."""
    redis = Redis.from_url(found.redis_url)
    try:
        info = await redis.xinfo_stream(Keys(found.namespace).events)
        return int(info.get("entries-added", info.get(b"entries-added", 0)))
    except Exception:  # no stream: a version that publishes no events
        return 0
    finally:
        await redis.aclose()


async def wait_drained(found: Stack, count: int, timeout_s: float) -> tuple[float, int]:
    conn = await asyncpg.connect(found.dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'completed'")
            if done >= count:
                break
            await asyncio.sleep(0.2)
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at)) AS span_s,"
            " count(*) FILTER (WHERE status = 'completed') AS completed FROM tasks"
        )
        return float(row["span_s"] or 0), int(row["completed"])
    finally:
        await conn.close()


async def wait_workers(found: Stack, count: int, timeout_s: float = 120) -> None:
    """Until `count` workers have reported (their heartbeat runs once they are up)."""
    redis = Redis.from_url(found.redis_url)
    try:
        deadline = time.monotonic() + timeout_s
        while await redis.zcard(Keys(found.namespace).workers) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} workers did not start within {timeout_s:.0f}s")
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


def cpu_s(processes: list[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def cpu_by_pid(processes: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds so far of each process still there (a backend may have ended)."""
    found = {}
    for process in processes:
        try:
            found[process.pid] = sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    with stack() as found:
        worker = start_worker(
            found,
            WORKER_QUEUE_MAXSIZE=str(args.concurrency),
            WORKER_PROCESSES=str(args.processes),
        )
        try:
            # The workers' CPU for the drain alone (not their start-up) is steadier
            # than the rate on a machine shared with other work.
            asyncio.run(wait_workers(found, args.processes))
            time.sleep(STARTUP_S)
            supervisor = psutil.Process(worker.pid)
            processes = [supervisor, *supervisor.children()]
            ids = asyncio.run(store(found, args.tasks))
            servers_before = [cpu_by_pid(group) for group in server_processes(found)]
            before = cpu_s(processes)
            asyncio.run(ring(found, ids))
            span_s, completed = asyncio.run(wait_drained(found, args.tasks, timeout_s=300))
            spent_s = cpu_s(processes) - before
            servers_s = [
                sum(cpu - was.get(pid, 0.0) for pid, cpu in cpu_by_pid(group).items())
                for group, was in zip(server_processes(found), servers_before, strict=True)
            ]
            entries = asyncio.run(event_entries(found))
        finally:
            worker.terminate()
            worker.wait(60)
    rate = completed / span_s if span_s else 0.0
    cpu_ms = spent_s * 1000 / max(completed, 1)
    print(
        f"drain: {completed}/{args.tasks} tasks completed in {span_s:.2f}s "
        f"= {rate:,.0f} tasks/s ({args.processes} worker process(es), concurrency "
        f"{args.concurrency} each); worker CPU {cpu_ms:.3f} ms per task; {entries} event entries"
    )
    if all(servers_before):  # the embedded servers (not BENCH_DATABASE_URL's or BENCH_REDIS_URL's)
        postgres_ms, valkey_ms = (spent * 1000 / max(completed, 1) for spent in servers_s)
        print(
            f"servers: PostgreSQL CPU {postgres_ms:.3f} ms per task"
            f" (one core commits about {1000 / postgres_ms:,.0f} tasks/s),"
            f" Valkey CPU {valkey_ms:.3f} ms per task"
        )


if __name__ == "__main__":
    main()
