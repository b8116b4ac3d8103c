"""How many tasks per second does one API process take through POST /tasks/batch
from one client, beside PgQueuer's bulk enqueue on the same PostgreSQL?

Taskline: one `taskline api` process (no worker); one client sends `--tasks`
`echo` tasks in batches of `--batch` over one keep-alive connection (`--inflight`
connections, each one batch at a time), request bytes made before the clock
starts; every answer is read and its `created` count checked. Reports tasks/s,
the answer time per batch and the API process's CPU time per task. `--answer
ids` (the default) asks for ids only (`Prefer: return=minimal`), as PgQueuer's
enqueue answers ids; `--answer tasks` for every task whole.

PgQueuer (when `pgqueuer` is installed: `pip install -e '.[bench]'`): the same
number of jobs, the same batch size and the same JSON bytes as payload, through
`Queries.enqueue` with lists (its bulk enqueue, one statement per batch) on one
asyncpg connection, into its own database on the same PostgreSQL server.

Beside them, Taskline's INSERT alone (the intake's statement, straight from
asyncpg, same batches; from 100 tasks without keys that statement is a COPY):
what its table (indexes, the count trigger) costs without HTTP, validation
and Redis.

Rounds alternate the order, so a drift in the machine's load weighs on both;
the summary takes each one's median.

    .venv/bin/python bench/batch.py [--batch 1000] [--tasks 100000] [--rounds 3]
        [--inflight 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, replace
from statistics import median

import asyncpg
from common import Stack, free_port, percentile, stack, start_api
from enqueue import cpu_s, truncate
from latency import wait_ready

PGQ_DATABASE = "pgqueuer_bench"
CREATED = re.compile(rb'"created":(\d+)')


@dataclass(frozen=True)
class Run:
    tasks: int
    elapsed_s: float
    batch_ms: list[float]
    cpu_ms: float | None = None  # the API process's, over the timed part

    @property
    def per_s(self) -> float:
        return self.tasks / self.elapsed_s

    def line(self, who: str) -> str:
        p50, p99 = percentile(self.batch_ms, 0.5), percentile(self.batch_ms, 0.99)
        cpu = f"; API CPU {self.cpu_ms / self.tasks * 1000:.1f} µs per task" if self.cpu_ms else ""
        return (f"{who}: {self.tasks:,} in {self.elapsed_s:.2f}s = {self.per_s:,.0f} tasks/s;"
                f" per batch p50 {p50:.1f} ms, p99 {p99:.1f} ms{cpu}")  # fmt: skip


def item(number: int) -> dict[str, str]:
    return {"message": f"task {number}"}


def requests(tasks: int, size: int, answer: str = "ids") -> list[bytes]:
    """The request bytes; `answer` "ids" asks for ids only (Prefer: return=minimal),
    "tasks" for every task whole."""
    prefer = "prefer: return=minimal\r\n" if answer == "ids" else ""
    made = []
    for start in range(0, tasks, size):
        items = [item(n) for n in range(start, min(tasks, start + size))]
        content = json.dumps({"tasks": items}, separators=(",", ":")).encode()
        head = (
            "POST /tasks/batch HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            f"{prefer}content-length: {len(content)}\r\n\r\n"
        )
        made.append(head.encode() + content)
    return made


async def read_body(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower().split("\r\n")
    length = next(int(line[15:]) for line in lines if line.startswith("content-length:"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


async def send_batches(port: int, batches: list[bytes], inflight: int) -> list[float]:
    """Each connection sends the next batch once its answer to the last is in."""
    times: list[float] = []
    pending = iter(batches)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in pending:
                sent = time.perf_counter()
                writer.write(request)
                status, body = await read_body(reader)
                times.append((time.perf_counter() - sent) * 1000)
                found = CREATED.search(body)
                if status != 200 or found is None or b'"refused":0' not in body:
                    raise SystemExit(f"a batch was not taken whole: {status} {body[-300:]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(inflight)))
    return times


async def taskline_run(port: int, pid: int, batches: list[bytes], tasks: int, inflight: int) -> Run:
    await wait_ready(f"http://127.0.0.1:{port}")
    await send_batches(port, batches[:2], 1)  # warm-up, not counted
    cpu_before, began = cpu_s(pid), time.perf_counter()
    times = await send_batches(port, batches, inflight)
    elapsed_s = time.perf_counter() - began
    return Run(tasks, elapsed_s, times, (cpu_s(pid) - cpu_before) * 1000)


def taskline(found: Stack, batches: list[bytes], tasks: int, inflight: int) -> Run:
    """One API process on an empty table and its own Redis keys."""
    asyncio.run(truncate(found.dsn))
    found = replace(found, namespace=f"{found.namespace}:{uuid.uuid4().hex[:6]}")
    port = free_port()
    api = start_api(found, port)
    try:
        run = asyncio.run(taskline_run(port, api.pid, batches, tasks, inflight))
    finally:
        api.terminate()
        api.wait(60)
    return run


async def insert_run(found: Stack, tasks: int, size: int) -> Run:
    """Taskline's INSERT alone (the statement the intake runs, a COPY for large
    batches), straight from asyncpg: what the table costs, without HTTP,
    validation or Redis."""
    from app.ids import uuid7_many
    from tasks.repository import insert_tasks
    from tasks.submissions import NewTask

    await truncate(found.dsn)
    conn = await asyncpg.connect(found.dsn)
    try:
        # The engine's jsonb codec (binary, as SQLAlchemy sets it): a COPY needs it.
        await conn.set_type_codec(
            "jsonb", encoder=lambda text: b"\x01" + text.encode(),
            decoder=lambda data: json.loads(data[1:]), schema="pg_catalog", format="binary",
        )  # fmt: skip
        chunks = []
        for start in range(0, tasks, size):
            numbers = range(start, min(tasks, start + size))
            ids = uuid7_many(len(numbers))
            chunks.append([
                NewTask(id=task_id, kind="echo", message=item(n)["message"], payload={},
                        max_attempts=3, timeout_seconds=300.0)
                for task_id, n in zip(ids, numbers, strict=True)
            ])  # fmt: skip
        times = []
        began = time.perf_counter()
        for chunk in chunks:
            sent = time.perf_counter()
            await insert_tasks(conn=conn, tasks=chunk)
            times.append((time.perf_counter() - sent) * 1000)
        return Run(tasks, time.perf_counter() - began, times)
    finally:
        await conn.close()


async def pgqueuer_setup(found: Stack) -> str | None:
    """PgQueuer's own database on the same server, its schema installed; None
    when pgqueuer is not installed."""
    try:
        from pgqueuer.queries import Queries
    except ImportError:
        return None
    admin = await asyncpg.connect(found.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{PGQ_DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{PGQ_DATABASE}"')
    finally:
        await admin.close()
    dsn = found.dsn.rsplit("/", 1)[0] + "/" + PGQ_DATABASE
    conn = await asyncpg.connect(dsn)
    try:
        await Queries.from_asyncpg_connection(conn).install()
    finally:
        await conn.close()
    return dsn


async def pgqueuer_run(dsn: str, tasks: int, size: int) -> Run:
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries.from_asyncpg_connection(conn)
        await queries.clear_queue()
        chunks = []
        for start in range(0, tasks, size):
            numbers = range(start, min(tasks, start + size))
            payloads: list[bytes | None] = [json.dumps(item(n)).encode() for n in numbers]
            chunks.append((["echo"] * len(payloads), payloads, [0] * len(payloads)))
        await queries.enqueue(*chunks[0])  # warm-up, as for Taskline
        await queries.clear_queue()
        times = []
        began = time.perf_counter()
        for entrypoints, payloads, priorities in chunks:
            sent = time.perf_counter()
            await queries.enqueue(entrypoints, payloads, priorities)
            times.append((time.perf_counter() - sent) * 1000)
        elapsed_s = time.perf_counter() - began
        return Run(tasks, elapsed_s, times)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000, help="tasks per request, 1..1000")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=1, help="batches in flight")
    parser.add_argument("--answer", choices=["ids", "tasks"], default="ids",
                        help="ids: Prefer: return=minimal (as PgQueuer answers ids);"
                        " tasks: every task whole")  # fmt: skip
    args = parser.parse_args()
    batches = requests(args.tasks, args.batch, args.answer)
    print(f"{args.tasks:,} tasks a run in batches of {args.batch}, {args.inflight} in flight,"
          f" answered with {args.answer}")  # fmt: skip
    names = {"http": "Taskline, POST /tasks/batch", "insert": "Taskline's INSERT alone",
             "pgqueuer": "PgQueuer, Queries.enqueue"}  # fmt: skip
    runs: dict[str, list[Run]] = {who: [] for who in names}
    with stack() as found:
        pgq_dsn = asyncio.run(pgqueuer_setup(found))
        if pgq_dsn is None:
            print("pgqueuer is not installed (pip install -e '.[bench]'): Taskline only")
        for index in range(args.rounds):
            order = list(names) if index % 2 == 0 else list(names)[::-1]
            for who in order:
                if who == "http":
                    run = taskline(found, batches, args.tasks, args.inflight)
                elif who == "insert":
                    run = asyncio.run(insert_run(found, args.tasks, args.batch))
                elif pgq_dsn is not None:
                    run = asyncio.run(pgqueuer_run(pgq_dsn, args.tasks, args.batch))
                else:
                    continue
                runs[who].append(run)
                print(run.line(f"round {index + 1}, {names[who]}"))
    for who, done in runs.items():
        if done:
            print(f"median of {len(done)}, {names[who]}: "
                  f"{median(run.per_s for run in done):,.0f} tasks/s")  # fmt: skip


if __name__ == "__main__":
    main()
