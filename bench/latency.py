"""How soon does a task start after its POST, at a steady 200 tasks/s?

Runs the API and one worker as processes, POSTs `echo` tasks at a fixed rate
and compares each task's started_at (PostgreSQL's clock) with the moment its
POST was sent (same machine, same clock). `raw` (the default) writes each
request as bytes on keep-alive connections: the API's time plus the loopback.
`httpx` adds what that client costs: about 1 ms of its CPU per request, more
than the API spends, and a heavier tail.

    .venv/bin/python bench/latency.py [--rate 200] [--seconds 10] [--client raw|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

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


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer read whole: its status and its body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower().split("\r\n")
    length = next(int(line[15:]) for line in head if line.startswith("content-length:"))
    return int(head[0].split()[1]), await reader.readexactly(length)


class KeepAlive:
    """POST /tasks written as bytes on keep-alive HTTP/1.1 connections: an idle
    one per request, a new one when none is idle. A connection idle for
    IDLE_S is closed rather than reused: uvicorn closes its side after 5 s."""

    IDLE_S = 2.0

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        # (reader, writer, when it was last answered: time.monotonic())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def post_task(self, body: dict[str, Any]) -> dict[str, Any]:
        """The created task (raises unless the answer is 201)."""
        reader, writer = await self._connection()
        content = json.dumps(body).encode()
        writer.write(
            b"POST /tasks HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(content), content)
        )
        status, answer = await read_answer(reader)
        self.idle.append((reader, writer, time.monotonic()))
        if status != 201:
            raise RuntimeError(f"POST /tasks answered {status}: {answer[:200]!r}")
        created: dict[str, Any] = json.loads(answer)
        return created

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer, answered_s = self.idle.pop()
            if time.monotonic() - answered_s < self.IDLE_S and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def aclose(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def post_steadily(
    base_url: str, rate: float, seconds: float, client: str = "raw"
) -> dict[uuid.UUID, float]:
    if client == "raw":
        raw = KeepAlive(base_url)

        async def post_raw(_: int) -> uuid.UUID:
            return uuid.UUID((await raw.post_task({"message": "latency"}))["id"])

        try:
            return await send_steadily(post_raw, rate, seconds)
        finally:
            await raw.aclose()
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


async def measure(found: Stack, base_url: str, rate: float, seconds: float, client: str) -> None:
    await wait_ready(base_url)
    await post_steadily(base_url, rate, 1.0, client)  # warm up the API and the worker
    sent = await post_steadily(base_url, rate, seconds, client)
    starts = await started_at(found, list(sent))
    delays_ms = [(starts[i][1] - sent[i]) * 1000 for i in sent if i in starts]
    stored_ms = [(starts[i][0] - sent[i]) * 1000 for i in sent if i in starts]
    picked_ms = [(starts[i][1] - starts[i][0]) * 1000 for i in sent if i in starts]
    print(f"latency: {len(delays_ms)}/{len(sent)} tasks started at {rate:.0f} tasks/s"
          f" ({client} client)")  # fmt: skip
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
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    args = parser.parse_args()
    with stack() as found:
        port = free_port()
        api, worker = start_api(found, port), start_worker(found)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(measure(found, url, args.rate, args.seconds, args.client))
        finally:
            for process in (api, worker):
                process.terminate()
                process.wait(60)


if __name__ == "__main__":
    main()
