"""PgQueuer on its own PostgreSQL database (schema installed by the runner with
`pgq install`): the adapter, and its worker (`python peer_pgqueuer.py worker`:
what `pgq run peer_pgqueuer:create --max-concurrent-tasks 10 --batch-size 5` does,
through `pgqueuer.run`, since pgqueuer 1.6.0's `pgq run` fails on its own
--log-level option with typer 0.29)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import probe
import uvloop
from harness import BULK_SIZE, Result, System, main
from pgqueuer import PgQueuer, run
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["BENCH_DSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        probe.record((job.payload or b"").decode())

    try:
        yield pgq
    finally:
        await connection.close()


class PgQueuerSystem(System):
    name = "PgQueuer"
    package = "pgqueuer"

    async def open(self) -> None:
        self.connection = await asyncpg.connect(self.options.dsn)
        self.queries = Queries(AsyncpgDriver(self.connection))

    async def close(self) -> None:
        await self.connection.close()

    async def reset(self) -> None:
        tables = await self.connection.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public'"
        )
        await self.connection.execute(f"TRUNCATE {', '.join(row['name'] for row in tables)}")

    async def enqueue(self, key: str) -> None:
        await self.queries.enqueue("noop", key.encode())

    async def fill(self, count: int) -> None:
        """PgQueuer's batch form: one INSERT per chunk."""
        for start in range(0, count, BULK_SIZE):
            await self.bulk(start, min(count, start + BULK_SIZE), prefix="d")

    async def run_enqueue(self) -> list[Result]:
        """One at a time, then its bulk form (one INSERT per BULK_SIZE jobs), as many
        jobs as the drain's."""
        results = await super().run_enqueue()
        count = self.options.tasks
        await self.bulk(0, BULK_SIZE)  # warm-up
        await self.reset()
        began = time.perf_counter()
        for start in range(0, count, BULK_SIZE):
            await self.bulk(start, min(count, start + BULK_SIZE))
        rate = count / (time.perf_counter() - began)
        await self.reset()
        return [*results, self.result("bulk", jobs_per_s=rate, batch=BULK_SIZE)]

    async def bulk(self, first: int, last: int, prefix: str = "b") -> None:
        keys = [f"{prefix}{n}".encode() for n in range(first, last)]
        await self.queries.enqueue(["noop"] * len(keys), list(keys), [0] * len(keys))

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, __file__, "worker"], {}


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        # Concurrency 10 must be at least twice the batch size: 5, half its default.
        uvloop.run(run(create, batch_size=5, max_concurrent_tasks=10))
    else:
        main(PgQueuerSystem)
