"""Taskline (in the project's virtualenv): the same workloads through its API and
worker processes, reusing bench/drain.py, bench/enqueue.py and bench/latency.py.

Jobs are tasks of kind `noop` (taskline_handlers.py). Enqueue: POST /tasks one at a
time on one keep-alive connection (bench/enqueue.py's raw client: the API's cost
plus the loopback), then the same through the Python client (httpx). Drain: tasks
stored by one COPY and their doorbells rung (bench/drain.py), and PostgreSQL's own
count checked afterwards. Bulk: POST /tasks/batch (where the API has it), 1,000 a
request. Latency: POST /tasks to one API process, written as bytes on keep-alive
connections (bench/latency.py's client), then the same through httpx. wrk: POST
/tasks with wrk.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/

import drain
import enqueue as posts
import httpx
from common import ROOT, Stack, free_port, start_api
from harness import HERE, WARM_UP, Result, System, main
from latency import KeepAlive, wait_ready
from redis.asyncio import Redis
from taskline_api import batch_form, post_batches, run_wrk

from taskline.client import Client

HANDLERS = {"TASKLINE_HANDLERS": "taskline_handlers", "PYTHONPATH": str(HERE)}


class TasklineSystem(System):
    name = "Taskline"
    package = "taskline"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        url = self.options.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        self.stack = Stack(url, self.options.redis_url, "peers")
        self.api: Any = None
        self.raw: KeepAlive | None = None  # None: POST through httpx

    async def open(self) -> None:
        """The latency workload's API process (the others start their own)."""
        if self.options.workload == "latency":
            self.url = await self.start_api()
            self.http = httpx.AsyncClient(
                base_url=self.url, limits=httpx.Limits(max_connections=50)
            )
            self.raw = KeepAlive(self.url)

    async def start_api(self) -> str:
        port = free_port()
        self.api = start_api(self.stack, port, **HANDLERS)
        await wait_ready(f"http://127.0.0.1:{port}")
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self.options.workload == "latency":
            await self.http.aclose()
            if self.raw is not None:
                await self.raw.aclose()
        if self.api is not None:
            self.api.terminate()
            self.api.wait(60)
            self.api = None

    async def reset(self) -> None:
        await posts.truncate(self.stack.dsn)
        redis = Redis.from_url(self.stack.redis_url)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()

    async def enqueue(self, key: str) -> None:
        if self.raw is not None:
            await self.raw.post_task({"message": key, "kind": "noop"})
            return
        response = await self.http.post("/tasks", json={"message": key, "kind": "noop"})
        response.raise_for_status()

    async def run_latency(self) -> list[Result]:
        """Through the raw client, then through httpx: what a Python caller adds."""
        found = await super().run_latency()
        raw, self.raw = self.raw, None
        try:
            through_httpx = await super().run_latency()
        finally:
            self.raw = raw
        return found + [{**result, "system": f"{self.name} (httpx client)"}
                        for result in through_httpx]  # fmt: skip

    async def fill(self, count: int) -> None:
        await drain.enqueue(self.stack, count, kind="noop")

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, str(ROOT / "worker.py")], self.stack.env(**HANDLERS)

    async def check_drained(self, count: int) -> dict[str, Any]:
        """Every task completed in PostgreSQL, and the rate from its timestamps
        (first claim to last final commit), as bench/drain.py reports it."""
        span_s, completed = await drain.wait_drained(self.stack, count, timeout_s=60)
        return {"completed_in_postgres": completed, "postgres_jobs_per_s": completed / span_s}

    async def run_enqueue(self) -> list[Result]:
        count = self.options.enqueue_tasks
        await self.reset()
        run = await asyncio.to_thread(posts.run_api, self.stack, {}, posts.raw(1), count)
        results = [self.result("enqueue", jobs_per_s=run.tasks_per_s,
                               api_cpu_ms=run.cpu_ms_per_post)]  # fmt: skip
        await self.reset()
        url = await self.start_api()
        try:
            rate = await asyncio.to_thread(client_rate, url, count)
            results.append(self.result("enqueue", "(Python client)", jobs_per_s=rate))
            results += await self.run_batches(url, self.options.tasks)
        finally:
            await self.close()
        await self.reset()
        return results

    async def run_batches(self, url: str, count: int) -> list[Result]:
        """Written as bytes and through httpx, a batch each in turn: what a
        Python caller adds."""
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            form = batch_form((await http.get("/openapi.json")).json())
        if form is None:
            return [self.result("bulk", skipped="no POST /tasks/batch")]
        rates, size = await post_batches(url, form, count)
        return [
            self.result("bulk", label, jobs_per_s=rates[client], batch=size)
            for client, label in (("raw", ""), ("httpx", "(httpx client)"))
        ]

    async def run_wrk(self) -> list[Result]:
        await self.reset()
        url = await self.start_api()
        try:
            found = await asyncio.to_thread(run_wrk, url, self.options.wrk_seconds,
                                            self.options.work_dir)  # fmt: skip
        finally:
            await self.close()
        await self.reset()
        return [self.result("wrk", **found)]


def client_rate(url: str, count: int) -> float:
    """taskline.client's create_task, one at a time: what a Python caller pays."""
    with Client(url) as client:
        for n in range(WARM_UP):
            client.create_task(f"w{n}")
        began = time.perf_counter()
        for n in range(count):
            client.create_task(f"e{n}")
        return count / (time.perf_counter() - began)


if __name__ == "__main__":
    main(TasklineSystem)
