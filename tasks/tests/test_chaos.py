"""Chaos: real worker and API processes, real servers, and faults on purpose.

Workers are SIGKILLed, Redis is flushed and killed, PostgreSQL restarts and
crashes, the API forgets its doorbells, floods and cancel storms hit it. Every `record` run
writes one executions row, so a lost task or a duplicated run is counted exactly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from redis.asyncio import Redis

from app.embedded import EmbeddedPostgres, EmbeddedValkey
from app.lifespan import Resources
from app.migrate import upgrade
from app.redis import Keys
from tasks.tests.fixtures import (
    EXECUTIONS_DDL,
    Stores,
    WorkerProcess,
    app_client,
    free_port,
    make_settings,
    plain_dsn,
    status_counts,
    wait_for,
    wait_status,
)

Spawn = Callable[..., WorkerProcess]


@pytest.fixture(autouse=True)
def quiet_http_log(caplog: pytest.LogCaptureFixture) -> None:
    """One log record per request would cost the flood more than the requests."""
    caplog.set_level(logging.WARNING, logger="httpx")


# Processes -------------------------------------------------------------------


async def stop_worker(worker: WorkerProcess) -> None:
    """It must have survived whatever the test did to it, and stop cleanly."""
    assert worker.process.poll() is None, f"the worker died:\n{worker.log()}"
    worker.signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 30) == 0, worker.log()


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of the test's own to restart: migrated, with the executions table."""
    server = EmbeddedPostgres(tmp_path / "private-pg" / "data", free_port(), database="taskline")
    try:
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(upgrade, server.url())
        conn = await asyncpg.connect(plain_dsn(server.url()))
        await conn.execute(EXECUTIONS_DDL)
        await conn.close()
        yield server
    finally:
        await asyncio.to_thread(server.stop)


# Tasks and executions ----------------------------------------------------------


def record(number: int, seconds: float = 0.0) -> dict[str, Any]:
    return {"message": f"chaos {number}", "kind": "record", "payload": {"seconds": seconds}}


async def post_many(
    clients: Sequence[httpx.AsyncClient],
    seconds: Sequence[float],
    on_ack: Callable[[str], None] | None = None,
) -> list[str]:
    """One `record` task per duration, one coroutine per client; every answer a 201."""
    ids = [""] * len(seconds)
    numbers = iter(range(len(seconds)))

    async def post_from(http: httpx.AsyncClient) -> None:
        for number in numbers:
            response = await http.post("/tasks", json=record(number, seconds[number]))
            assert response.status_code == 201, response.text
            ids[number] = response.json()["id"]
            if on_ack is not None:
                on_ack(ids[number])

    await asyncio.gather(*(post_from(http) for http in clients))
    return ids


async def runs(db: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """Per task id: (executions, executions that finished)."""
    rows = await db.fetch(
        "SELECT task_id, count(*) AS runs, count(finished_at) AS finished"
        " FROM executions GROUP BY task_id"
    )
    return {str(row["task_id"]): (row["runs"], row["finished"]) for row in rows}


async def assert_each_ran_once(db: asyncpg.Connection, ids: Sequence[str]) -> None:
    ran = await runs(db)
    assert len(set(ids)) == len(ids)
    assert set(ran) == set(ids), f"{len(set(ids) - set(ran))} never ran"
    twice = {task_id: n for task_id, n in ran.items() if n != (1, 1)}
    assert twice == {}, await describe_runs(db, list(twice)[:5], of=len(twice))


async def describe_runs(db: asyncpg.Connection, task_ids: Sequence[str], *, of: int) -> str:
    """What a failure needs to tell a retry from a second claim: each run's attempt,
    worker process and times, and the task's own attempts and errors."""
    rows = await db.fetch(
        "SELECT e.task_id, e.attempt, e.pid, e.started_at, e.finished_at,"
        " t.attempts, t.errors FROM executions e JOIN tasks t ON t.id = e.task_id"
        " WHERE e.task_id = ANY($1::uuid[]) ORDER BY e.task_id, e.started_at",
        task_ids,
    )
    lines = [f"{of} task(s) did not run exactly once; the first of them:"]
    lines += [str(dict(row)) for row in rows]
    return "\n".join(lines)


# Posting through an outage -------------------------------------------------------


@dataclass
class Flow:
    """POSTs one task after another, keeping every answer, until told to stop."""

    codes: Counter[int] = field(default_factory=Counter)
    acked: list[str] = field(default_factory=list)
    odd: list[str] = field(default_factory=list)  # anything but a 201 or a JSON 503
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, http: httpx.AsyncClient) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            response = await http.post("/tasks", json=record(number))
            self.codes[response.status_code] += 1
            if response.status_code == 201:
                self.acked.append(response.json()["id"])
            elif response.status_code != 503 or not _json_detail(response):
                self.odd.append(f"{response.status_code} {response.text[:300]}")
            await asyncio.sleep(0.005)  # pace the flow: at most ~200 POSTs a second


def _json_detail(response: httpx.Response) -> bool:
    try:
        return bool(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return False


async def flow_through_outage(
    http: httpx.AsyncClient, down: Callable[[], None], up: Callable[[], None]
) -> Flow:
    """Tasks flow; the store goes down for ~2 s and comes back; tasks flow again."""
    flow = Flow()
    poster = asyncio.create_task(flow.run(http))

    async def acked(target: int) -> bool:
        if poster.done():
            poster.result()  # raise what stopped it
            raise AssertionError("the poster stopped")
        return len(flow.acked) >= target

    try:
        await wait_for(lambda: acked(20), timeout_s=20, what="20 tasks before the outage")
        await asyncio.to_thread(down)
        await asyncio.sleep(2)  # let the outage last
        await asyncio.to_thread(up)
        target = len(flow.acked) + 20
        await wait_for(lambda: acked(target), timeout_s=30, what="20 tasks after the outage")
    finally:
        flow.stop.set()
        await poster
    return flow


# The tests -----------------------------------------------------------------------


@pytest.mark.chaos
async def test_sigkilled_worker_tasks_run_again_and_the_rest_exactly_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    # 3 s each: long enough that none of the first 20 ends before the kill on a busy machine.
    ids = await post_many([client] * 10, [3.0] * 40)
    first = spawn_worker(WORKER_QUEUE_MAXSIZE="20", WORKER_LEASE_SECONDS="2")

    async def all_slots_busy() -> bool:
        return int(await db.fetchval("SELECT count(*) FROM executions")) >= 20

    await wait_for(all_slots_busy, timeout_s=30, what="20 running executions")
    first.signal(signal.SIGKILL)
    assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
    assert await status_counts(db) == {"processing": 20, "pending": 20}
    interrupted = {
        str(row["task_id"])
        for row in await db.fetch(
            "SELECT task_id FROM executions WHERE pid = $1 AND finished_at IS NULL",
            first.process.pid,
        )
    }
    assert interrupted, "nothing was running when the worker was killed"

    # The default lease: a stalled heartbeat must not hand its own tasks to a second run.
    second = spawn_worker(WORKER_QUEUE_MAXSIZE="20")
    await wait_status(db, ids, "completed", timeout_s=45)
    assert await status_counts(db) == {"completed": 40}
    ran = await runs(db)
    assert set(ran) == set(ids)
    for task_id in ids:
        executions, finished = ran[task_id]
        assert finished == 1, f"task {task_id} finished {finished} times"
        assert executions == (2 if task_id in interrupted else 1), (task_id, executions)
    await stop_worker(second)


@pytest.mark.chaos
async def test_flushed_redis_loses_no_pending_task(
    database_url: str,
    namespace: str,
    db: asyncpg.Connection,
    spawn_worker: Spawn,
    valkey: EmbeddedValkey,
) -> None:
    async with app_client(make_settings(database_url, valkey.url(), namespace)) as http:
        ids = await post_many([http] * 20, [0.0] * 500)
    redis = Redis.from_url(valkey.url())
    try:
        assert await redis.zcard(Keys(namespace).ready("default")) == 500
        await redis.flushall()
        assert await redis.dbsize() == 0
    finally:
        await redis.aclose()
    assert await status_counts(db) == {"pending": 500}

    worker = spawn_worker(REDIS_URL=valkey.url())
    await wait_status(db, ids, "completed", timeout_s=45)
    await assert_each_ran_once(db, ids)
    assert "re-rang the doorbell" in worker.log()
    await stop_worker(worker)


@pytest.mark.chaos
async def test_postgres_restart_answers_503_and_loses_no_acknowledged_task(
    postgres: EmbeddedPostgres, postgres_outage: Outage
) -> None:
    ran, worker = await postgres_outage(postgres.stop)  # a fast shutdown
    # A handler cut off by the outage may have left an unfinished execution
    # before its retry; none may have finished twice.
    not_once = {task_id: n for task_id, n in ran.items() if n[1] != 1}
    assert not_once == {}, f"not completed exactly once: {list(not_once.items())[:5]}"
    await stop_worker(worker)


@pytest.mark.chaos
async def test_postgres_crash_loses_no_acknowledged_task(
    postgres: EmbeddedPostgres, postgres_outage: Outage
) -> None:
    """A SIGKILL, not a shutdown: WAL not yet flushed is gone. Every 201 was
    flushed first; a claim may be forgotten (CLAIM_SYNCHRONOUS_COMMIT=off), and
    its task then runs again: at least once, never lost, never stuck."""
    ran, worker = await postgres_outage(partial(crash, postgres))
    unfinished = {task_id: n for task_id, n in ran.items() if n[1] < 1}
    assert unfinished == {}, f"completed without a finished run: {list(unfinished.items())[:5]}"
    await stop_worker(worker)


def crash(server: EmbeddedPostgres) -> None:
    """SIGKILL the postmaster, then wait for its processes to notice and exit:
    the restart must not find them holding the old shared memory."""
    assert server.process is not None
    children = psutil.Process(server.process.pid).children(recursive=True)
    server.kill()
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], f"PostgreSQL processes outlived their postmaster: {alive}"


Runs = dict[str, tuple[int, int]]
Outage = Callable[[Callable[[], None]], Awaitable[tuple[Runs, WorkerProcess]]]


@pytest.fixture
def postgres_outage(
    stores: Stores,
    namespace: str,
    spawn_worker: Spawn,
    postgres: EmbeddedPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> Outage:
    """Tasks flow through an API and a worker on the test's own PostgreSQL while
    `down` takes it away and it starts again; every acknowledged task completes.
    Gives the runs on record and the worker."""

    async def through(down: Callable[[], None]) -> tuple[Runs, WorkerProcess]:
        dsn = plain_dsn(postgres.url())
        monkeypatch.setenv("TASKLINE_TEST_RECORD_DSN", dsn)
        worker = spawn_worker(DATABASE_URL=postgres.url(), TASKLINE_TEST_RECORD_DSN=dsn)
        settings = make_settings(postgres.url(), stores.redis_url, namespace)
        async with app_client(settings) as http:
            flow = await flow_through_outage(http, down, postgres.start)
        return await all_acknowledged_completed(flow, dsn, worker), worker

    return through


async def all_acknowledged_completed(flow: Flow, dsn: str, worker: WorkerProcess) -> Runs:
    """The flow saw only 201s and JSON 503s, some 503s, and every task ends
    completed, each acknowledged one with a run on record; returns the runs."""
    assert flow.odd == [], flow.odd[:5]
    assert set(flow.codes) <= {201, 503}, flow.codes
    assert flow.codes[503] > 0, f"no 503 during the outage: {flow.codes}"
    db = await asyncpg.connect(dsn)
    try:
        try:
            await wait_status(db, flow.acked, "completed", timeout_s=45)
        except AssertionError as error:
            lines = [line for line in worker.log().splitlines() if "taskline" in line]
            raise AssertionError(f"{error}; worker log:\n" + "\n".join(lines[-60:])) from None
        counts = await status_counts(db)
        assert set(counts) == {"completed"}, counts  # a task whose 201 was lost included
        ran = await runs(db)
    finally:
        await db.close()
    assert set(flow.acked) <= set(ran)
    return ran


@pytest.mark.chaos
async def test_killed_redis_loses_no_acknowledged_task(
    database_url: str,
    namespace: str,
    db: asyncpg.Connection,
    spawn_worker: Spawn,
    valkey: EmbeddedValkey,
) -> None:
    worker = spawn_worker(REDIS_URL=valkey.url())
    async with app_client(make_settings(database_url, valkey.url(), namespace)) as http:
        flow = await flow_through_outage(http, valkey.kill, valkey.start)  # same port and data
    assert flow.odd == [], flow.odd[:5]
    assert set(flow.codes) <= {201, 503}, flow.codes

    await wait_status(db, flow.acked, "completed", timeout_s=45)
    assert set(await status_counts(db)) == {"completed"}
    await assert_each_ran_once(db, flow.acked)
    await stop_worker(worker)


@pytest.mark.chaos
async def test_api_dying_between_commit_and_push_loses_no_task(
    db: asyncpg.Connection,
    resources: Resources,
    spawn_api: Callable[..., Awaitable[str]],
    spawn_worker: Spawn,
) -> None:
    url = await spawn_api(TASKLINE_FAULT_SKIP_PUSH="true")
    async with httpx.AsyncClient(base_url=url) as http:
        ids = await post_many([http] * 5, [0.0] * 20)
    assert await resources.redis.zcard(resources.keys.ready("default")) == 0
    assert await status_counts(db) == {"pending": 20}

    worker = spawn_worker()
    await wait_status(db, ids, "completed")
    await assert_each_ran_once(db, ids)
    assert "re-rang the doorbell" in worker.log()
    await stop_worker(worker)


@pytest.mark.chaos
async def test_ten_thousand_tasks_from_fifty_clients_run_exactly_once(
    db: asyncpg.Connection, spawn_api: Callable[..., Awaitable[str]], spawn_worker: Spawn
) -> None:
    total = 10_000
    workers = [spawn_worker() for _ in range(3)]
    url = await spawn_api("--workers", "2")
    async with AsyncExitStack() as stack:
        # One client (and connection) each: a shared pool of 50 costs the poster far more CPU.
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
            for _ in range(50)
        ]
        ids = await post_many(clients, [0.0] * total)
    assert len(set(ids)) == total
    await wait_status(db, ids, "completed", timeout_s=60)
    assert await status_counts(db) == {"completed": total}
    await assert_each_ran_once(db, ids)
    for worker in workers:
        await stop_worker(worker)


@pytest.mark.chaos
async def test_cancel_storm_ends_every_task_in_exactly_one_final_status(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    total, rng = 1000, random.Random()
    workers = [spawn_worker(WORKER_QUEUE_MAXSIZE="50") for _ in range(2)]
    answers: dict[str, int] = {}
    cancels: list[asyncio.Task[None]] = []

    async def cancel_later(task_id: str) -> None:
        await asyncio.sleep(rng.uniform(0, 0.4))  # a random moment of the task's life
        response = await client.patch(f"/tasks/{task_id}", json={"status": "canceled"})
        assert response.status_code in (200, 202, 409), response.text
        answers[task_id] = response.status_code

    def maybe_cancel(task_id: str) -> None:
        if rng.random() < 0.4:
            cancels.append(asyncio.create_task(cancel_later(task_id)))

    durations = [rng.uniform(0, 0.3) for _ in range(total)]
    ids = await post_many([client] * 10, durations, on_ack=maybe_cancel)
    await asyncio.gather(*cancels)

    async def all_final() -> bool:
        counts = await status_counts(db)
        return counts.get("completed", 0) + counts.get("canceled", 0) == total

    await wait_for(all_final, timeout_s=45, what=f"{total} tasks completed or canceled")
    assert set(await status_counts(db)) <= {"completed", "canceled"}
    tasks = {str(row["id"]): row for row in await db.fetch("SELECT id, status, error FROM tasks")}
    assert set(tasks) == set(ids)
    assert Counter(answers.values())[202] > 0, "no cancel reached a running task"
    executions: dict[str, list[asyncpg.Record]] = {task_id: [] for task_id in ids}
    for row in await db.fetch(
        "SELECT task_id, extract(epoch FROM finished_at)::float8 AS finished FROM executions"
    ):
        executions[str(row["task_id"])].append(row)
    for task_id, task in tasks.items():
        ran, answer = executions[task_id], answers.get(task_id)
        if task["status"] == "completed":
            assert [row["finished"] is not None for row in ran] == [True], (task_id, ran)
            assert answer in (None, 202, 409), (task_id, answer)
            continue
        assert answer in (200, 202), f"task {task_id} canceled, answered {answer}"
        assert len(ran) <= 1, (task_id, ran)
        if answer == 200:
            assert ran == [], f"task {task_id} canceled while pending, yet it ran"
        elif ran and ran[0]["finished"] is not None:
            # The handler's last write is an await too, and so is handing its
            # connection back: a cancel can reach the handler after that write
            # commits and before the handler returns, even one asked after the
            # commit. The handler was still cut off: canceled while running.
            assert task["error"] == "canceled while running", (task_id, task["error"])
    for worker in workers:
        await stop_worker(worker)


@pytest.mark.chaos
async def test_running_tasks_come_back_after_an_outage_longer_than_the_lease(
    stores: Stores,
    namespace: str,
    spawn_worker: Spawn,
    postgres: EmbeddedPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = plain_dsn(postgres.url())
    monkeypatch.setenv("TASKLINE_TEST_RECORD_DSN", dsn)
    worker = spawn_worker(
        DATABASE_URL=postgres.url(), TASKLINE_TEST_RECORD_DSN=dsn, WORKER_LEASE_SECONDS="2"
    )
    # Attempts to spare: a lease this short may also lapse on a busy machine
    # around the restart, and each lapse costs an attempt (at least once).
    settings = make_settings(postgres.url(), stores.redis_url, namespace, default_max_attempts=10)
    async with app_client(settings) as http:
        ids = await post_many([http], [4.0] * 5)
    db = await asyncpg.connect(dsn)
    try:
        await wait_status(db, ids, "processing", timeout_s=15)
    finally:
        await db.close()
    await asyncio.to_thread(postgres.stop)
    await asyncio.sleep(3)  # longer than the lease: the worker must let these tasks go
    await asyncio.to_thread(postgres.start)
    db = await asyncpg.connect(dsn)
    try:
        # Dropped by the worker when its leases lapsed, then recovered, run again, completed.
        try:
            await wait_status(db, ids, "completed", timeout_s=45)
        except AssertionError as error:
            tail = worker.log()[-4000:]
            raise AssertionError(f"{error}: {await status_counts(db)}\n{tail}") from None
        counts = await status_counts(db)
        assert counts == {"completed": 5}, counts
        ran = await runs(db)
        # At least once: a handler that finished just as its lease lapsed may run again.
        assert all(ran[task_id][1] >= 1 for task_id in ids), ran
    finally:
        await db.close()
    await stop_worker(worker)


@pytest.mark.chaos
async def test_a_kind_slot_held_by_a_sigkilled_worker_frees_itself(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    """KIND_CONCURRENCY 1: the worker holding the only slot dies mid-task; the
    other worker runs the waiting task of that kind once the lease has expired."""
    limit = {"KIND_CONCURRENCY": '{"record": 1}', "WORKER_LEASE_SECONDS": "2"}
    held, waiting = [
        (await client.post("/tasks", json=body)).json()["id"]
        for body in (
            {"message": "holds the slot", "kind": "record", "payload": {"seconds": 60},
             "max_attempts": 1},
            {"message": "waits for it", "kind": "record"},
        )
    ]  # fmt: skip
    doomed = spawn_worker(**limit)

    async def slot_taken() -> bool:
        return int(await db.fetchval("SELECT count(*) FROM executions")) == 1

    await wait_for(slot_taken, timeout_s=30, what="the first task running")
    survivor = spawn_worker(**limit)
    doomed.signal(signal.SIGKILL)
    assert await asyncio.to_thread(doomed.wait, 10) == -signal.SIGKILL

    await wait_status(db, [waiting], "completed", timeout_s=30)
    # The slot frees itself when the lease expires; the sweep that records the
    # lost attempt may come a moment after the waiting task has run.
    await wait_status(db, [held], "failed", timeout_s=30)
    ran = await runs(db)
    assert ran == {held: (1, 0), waiting: (1, 1)}
    lost = await db.fetchval("SELECT error FROM tasks WHERE id = $1::uuid", held)
    assert lost.startswith("worker lost")
    pid = await db.fetchval("SELECT pid FROM executions WHERE task_id = $1::uuid", waiting)
    assert pid == survivor.process.pid
    await stop_worker(survivor)
