"""How soon does a task start after its POST, at a steady 200 tasks/s?

Runs the API and one worker as processes, POSTs `echo` tasks at a fixed rate
and compares each task's started_at (PostgreSQL's clock) with the moment its
POST was sent (same machine, same clock).

    .venv/bin/python bench/latency.py [--rate 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg
import httpx
from common import Stack, free_port, percentile, stack, start_api, start_worker
from rates import send_steadily


async def wait_ready(base_url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base_url) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("API did not become ready")


async def post_steadily(base_url: str, rate: float, seconds: float) -> dict[uuid.UUID, float]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as http:

        async def post_one(_: int) -> uuid.UUID:
            response = await http.post("/tasks", json={"message": "latency"})
            response.raise_for_status()
            return uuid.UUID(response.json()["id"])

        return await send_steadily(post_one, rate, seconds)


async def started_at(found: Stack, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[float, float]]:
    """Per task: (created_at, started_at) as PostgreSQL recorded them."""
    conn = await asyncpg.connect(found.dsn)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                "SELECT id, extract(epoch FROM started_at) AS t,"
                " extract(epoch FROM created_at) AS c FROM tasks"
                " WHERE id = ANY($1::uuid[]) AND started_at IS NOT NULL",
                ids,
            )
            if len(rows) == len(ids):
                break
            await asyncio.sleep(0.2)
        return {row["id"]: (float(row["c"]), float(row["t"])) for row in rows}
    finally:
        await conn.close()


async def measure(found: Stack, base_url: str, rate: float, seconds: float) -> None:
    await wait_ready(base_url)
    await post_steadily(base_url, rate, 1.0)  # warm up connections
    sent = await post_steadily(base_url, rate, seconds)
    starts = await started_at(found, list(sent))
    delays_ms = [(starts[i][1] - sent[i]) * 1000 for i in sent if i in starts]
    stored_ms = [(starts[i][0] - sent[i]) * 1000 for i in sent if i in starts]
    picked_ms = [(starts[i][1] - starts[i][0]) * 1000 for i in sent if i in starts]
    print(f"latency: {len(delays_ms)}/{len(sent)} tasks started at {rate:.0f} tasks/s")
    for name, values in (
        ("POST sent -> started_at", delays_ms),
        ("  POST sent -> row stored", stored_ms),
        ("  row stored -> started_at", picked_ms),
    ):
        print(f"{name}: p50 {percentile(values, 0.50):.1f} ms, "
              f"p99 {percentile(values, 0.99):.1f} ms, max {max(values):.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with stack() as found:
        port = free_port()
        api, worker = start_api(found, port), start_worker(found)
        try:
            asyncio.run(measure(found, f"http://127.0.0.1:{port}", args.rate, args.seconds))
        finally:
            for process in (api, worker):
                process.terminate()
                process.wait(60)


if __name__ == "__main__":
    main()
