"""What do 1,000 concurrent waiters cost one API process, and how soon do they wake?

Runs the API and one worker as processes. Creates N `echo` tasks due a few
seconds from now, spread over `--spread` seconds, and opens N connections to
the API, idle at first, then each with a `GET /tasks/{id}?wait=60` in flight.
Reports the API process's memory (RSS) and CPU (psutil) when idle, with N idle
connections, and with N waiting requests; then, as the tasks run, how long
after each task's final commit (its finished_at, PostgreSQL's clock on this
machine) its waiter had the answer.

    .venv/bin/python bench/waiters.py [--waiters 1000] [--spread 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import asyncpg
import httpx
import psutil
from common import Stack, free_port, percentile, stack, start_api, start_worker
from latency import wait_ready
from redis.asyncio import Redis

from app.redis import Keys
from tasks import events

HOLD_S = 5.0  # how long each phase is measured
SETTLE_S = 2.0  # before measuring: the requests of a phase have arrived


class Waiter:
    """One raw HTTP/1.1 connection: cheap on the client, so the API is what is measured."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered_at = 0.0
        self.status = ""

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def wait(self, task_id: uuid.UUID) -> None:
        request = f"GET /tasks/{task_id}?wait=60 HTTP/1.1\r\nHost: bench\r\n\r\n"
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.answered_at = time.time()
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        self.status = json.loads(await self.reader.readexactly(length))["status"]
        self.writer.close()


async def create_tasks(base_url: str, count: int, first_due_s: float, spread_s: float) -> list:
    limits, timeout = httpx.Limits(max_connections=20), httpx.Timeout(30, pool=None)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as http:

        async def one(index: int) -> uuid.UUID:
            delay_s = first_due_s + spread_s * index / count
            body = {"message": f"waiter {index}", "delay_seconds": delay_s}
            response = await http.post("/tasks", json=body)
            response.raise_for_status()
            return uuid.UUID(response.json()["id"])

        return list(await asyncio.gather(*(one(index) for index in range(count))))


def usage(process: psutil.Process) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds so far)."""
    times = process.cpu_times()
    return process.memory_info().rss / 2**20, times.user + times.system


async def hold(process: psutil.Process, label: str) -> float:
    """Measure a quiet phase once settled: RSS at its end, CPU over HOLD_S seconds."""
    await asyncio.sleep(SETTLE_S)
    _, cpu_before = usage(process)
    await asyncio.sleep(HOLD_S)
    rss_mib, cpu_after = usage(process)
    cpu_pct = (cpu_after - cpu_before) / HOLD_S * 100
    print(f"{label:<32} RSS {rss_mib:7.1f} MiB   CPU {cpu_pct:5.2f}% of a core")
    return rss_mib


async def finished_at(found: Stack, ids: list[uuid.UUID]) -> dict[uuid.UUID, float]:
    conn = await asyncpg.connect(found.dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, extract(epoch FROM finished_at)::float8 AS t FROM tasks"
            " WHERE id = ANY($1::uuid[])",
            ids,
        )
        return {row["id"]: row["t"] for row in rows}
    finally:
        await conn.close()


async def announced_at(found: Stack) -> dict[uuid.UUID, float]:
    """When each task's final event was published (the entry's time)."""
    redis = Redis.from_url(found.redis_url, decode_responses=True)
    try:
        entries = await redis.xrange(Keys(found.namespace).events)
    finally:
        await redis.aclose()
    return {
        event.task_id: event.at_s
        for entry_id, fields in entries
        for event in events.decode(entry_id, fields)
        if event.final
    }


async def measure(found: Stack, port: int, api_pid: int, count: int, spread_s: float) -> None:
    base_url = f"http://127.0.0.1:{port}"
    await wait_ready(base_url)
    process = psutil.Process(api_pid)
    waiters = [Waiter(port) for _ in range(count)]
    first_due_s = 3 * (SETTLE_S + HOLD_S) + 10  # after the three quiet phases
    ids = await create_tasks(base_url, count, first_due_s, spread_s)
    idle = await hold(process, "idle")
    await asyncio.gather(*(waiter.connect() for waiter in waiters))
    connected = await hold(process, f"{count} idle connections")
    waiting = [asyncio.create_task(w.wait(i)) for w, i in zip(waiters, ids, strict=True)]
    busy = await hold(process, f"{count} waiting requests")
    print(f"per connection: {(connected - idle) * 1024 / count:.1f} KiB; "
          f"per waiting request on top: {(busy - connected) * 1024 / count:.1f} KiB")  # fmt: skip
    await asyncio.wait_for(asyncio.gather(*waiting), timeout=first_due_s + spread_s + 60)
    ends, announced = await finished_at(found, ids), await announced_at(found)
    delays_ms = [(w.answered_at - ends[i]) * 1000 for w, i in zip(waiters, ids, strict=True)]
    to_event_ms = [(announced[i] - ends[i]) * 1000 for i in ids if i in announced]
    statuses = {w.status for w in waiters}
    print(f"{count} waiters answered ({', '.join(sorted(statuses))}), tasks finishing at "
          f"~{count / spread_s:.0f}/s: final commit -> answer p50 "
          f"{percentile(delays_ms, 0.5):.1f} ms, p99 {percentile(delays_ms, 0.99):.1f} ms, "
          f"max {max(delays_ms):.1f} ms")  # fmt: skip
    print(f"  of which final commit -> event published: p50 {percentile(to_event_ms, 0.5):.1f} ms,"
          f" p99 {percentile(to_event_ms, 0.99):.1f} ms ({len(to_event_ms)} events)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=10.0)
    args = parser.parse_args()
    with stack() as found:
        port = free_port()
        api, worker = start_api(found, port), start_worker(found)
        try:
            asyncio.run(measure(found, port, api.pid, args.waiters, args.spread))
        finally:
            for process in (api, worker):
                process.terminate()
                process.wait(60)


if __name__ == "__main__":
    main()
