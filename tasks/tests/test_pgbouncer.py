"""The API and workers through PgBouncer in transaction mode (DATABASE_POOLER).

A real PgBouncer (Debian's `pgbouncer`; `make test` installs it) stands in front
of the embedded PostgreSQL with a pool of 4 server connections, far fewer than
the clients of the API and worker processes, so consecutive statements of one
client run on different server connections: a statement that relied on the one
before it (a named prepared statement, a session setting) fails here.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from app.config import Settings
from app.embedded import EmbeddedPgBouncer
from app.lifespan import Resources, close_resources, open_resources
from app.migrate import upgrade
from tasks import presence, repository
from tasks.tests.fixtures import (
    Stores,
    WorkerProcess,
    free_port,
    plain_dsn,
    wait_for,
    wait_status,
    with_database,
)
from tasks.tests.test_worker import executions, max_overlap

POOL_SIZE = 4  # server connections per database: fewer than any process's clients
THROUGH = {"DATABASE_POOLER": "transaction"}
MISSING = (
    "pgbouncer is not installed: `make test` installs Debian's pgbouncer"
    " (apt-get install pgbouncer); without it these tests cannot run"
)

Spawn = Callable[..., WorkerProcess]
SpawnApi = Callable[..., Awaitable[str]]


@pytest.fixture
def pgbouncer(stores: Stores, tmp_path: Path) -> Iterator[EmbeddedPgBouncer]:
    if EmbeddedPgBouncer.binary() is None:
        pytest.skip(MISSING)
    bouncer = EmbeddedPgBouncer(
        tmp_path / "pgbouncer", free_port(), stores.admin_url, pool_size=POOL_SIZE
    )
    bouncer.start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def pooled_url(pgbouncer: EmbeddedPgBouncer, database_url: str) -> str:
    """This test's database, reached through PgBouncer."""
    return pgbouncer.url(database_url.rsplit("/", 1)[1])


@pytest.fixture
async def api(spawn_api: SpawnApi, pooled_url: str) -> AsyncIterator[httpx.AsyncClient]:
    url = await spawn_api(DATABASE_URL=pooled_url, **THROUGH)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http


def spawn_pooled(spawn_worker: Spawn, pooled_url: str, **env: str) -> WorkerProcess:
    return spawn_worker(DATABASE_URL=pooled_url, **THROUGH, **env)


async def post(http: httpx.AsyncClient, kind: str = "echo", **fields: Any) -> dict[str, Any]:
    body = {"message": f"{kind} through the pooler", "kind": kind, **fields}
    response = await http.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def server_connections(bouncer: EmbeddedPgBouncer) -> int:
    """The server connections PgBouncer holds open, counted on its own sockets.

    Not pg_stat_activity: a backend whose connection PgBouncer has just closed
    stays listed there until it has exited, beside the one that replaced it."""
    assert bouncer.process is not None
    return sum(
        1
        for conn in psutil.Process(bouncer.process.pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == bouncer.server.port and conn.status == "ESTABLISHED"
    )


def client_connections(bouncer: EmbeddedPgBouncer) -> int:
    return sum(
        1
        for conn in psutil.net_connections(kind="tcp")
        if conn.laddr and conn.laddr.port == bouncer.port and conn.status == "ESTABLISHED"
    )


# The control: without the setting, the same pooler breaks the statements ----------------


async def hammer(settings: Settings) -> list[BaseException]:
    """Many statements from many pooled clients at once: the SQLAlchemy session
    path and the asyncpg path (driver_connection). Returns what failed."""
    resources = open_resources(settings)
    missing = uuid.uuid4()

    async def one(n: int) -> None:
        for _ in range(10):
            if n % 2:
                async with resources.sessionmaker() as session:
                    await repository.get_task(session=session, task_id=missing, owner=None)
            else:
                async with repository.driver_connection(resources.engine) as conn:
                    await repository.claim(conn=conn, ids=[missing], worker_id="w", lease_s=1)

    try:
        results = await asyncio.gather(*(one(n) for n in range(16)), return_exceptions=True)
    finally:
        await close_resources(resources)
    return [result for result in results if isinstance(result, BaseException)]


async def test_without_database_pooler_statements_break_on_shared_connections(
    settings: Settings, pooled_url: str
) -> None:
    through = settings.model_copy(update={"database_url": pooled_url, "db_pool_size": 8})
    failures = await hammer(through)
    assert failures, "the pooler did not share server connections: this file proves nothing"
    assert any("prepared statement" in str(error) for error in failures), failures[:3]

    assert await hammer(through.model_copy(update={"database_pooler": "transaction"})) == []


# The API and workers through the pooler ------------------------------------------------


async def test_tasks_posted_by_many_clients_all_run_through_the_pooler(
    api: httpx.AsyncClient,
    pgbouncer: EmbeddedPgBouncer,
    pooled_url: str,
    spawn_worker: Spawn,
    db: asyncpg.Connection,
    resources: Resources,
) -> None:
    workers = [spawn_pooled(spawn_worker, pooled_url) for _ in range(2)]

    async def both_up() -> bool:
        return len(await presence.live_workers(resources)) == 2

    await wait_for(both_up, timeout_s=60, what="both workers to report")
    gate = asyncio.Semaphore(24)

    async def submit(n: int) -> str:
        async with gate:
            task = await post(api, "record" if n % 10 == 0 else "echo", payload={})
            assert (await api.get(f"/tasks/{task['id']}")).status_code == 200
            return str(task["id"])

    peak_servers = 0

    async def watch() -> None:
        nonlocal peak_servers
        while True:
            peak_servers = max(peak_servers, server_connections(pgbouncer))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        ids = await asyncio.gather(*(submit(n) for n in range(300)))
        # A batch this large is copied (COPY in its own transaction) through the pooler.
        batch = await api.post(
            "/tasks/batch", json={"tasks": [{"message": str(n)} for n in range(150)]}
        )
        assert batch.status_code == 200 and batch.json()["created"] == 150, batch.text
        ids += [result["task"]["id"] for result in batch.json()["results"]]
        listed = await api.get("/tasks", params={"limit": 500})
        assert listed.status_code == 200, listed.text
        clients = client_connections(pgbouncer)
        await wait_status(db, ids, "completed", timeout_s=90)
    finally:
        watcher.cancel()

    rows = await executions(db)
    assert len(rows) == 30, "each record task ran once"
    assert len({row["pid"] for row in rows}) == 2, "both workers took part"
    assert clients > POOL_SIZE, f"only {clients} client connections: nothing was shared"
    assert 1 <= peak_servers <= POOL_SIZE, peak_servers
    for worker in workers:
        assert worker.process.poll() is None, worker.log()
        assert "prepared statement" not in worker.log()


async def test_wait_cancel_retry_and_a_kind_limit_through_the_pooler(
    api: httpx.AsyncClient, pooled_url: str, spawn_worker: Spawn, db: asyncpg.Connection
) -> None:
    limit = '{"record": 2}'
    for _ in range(2):
        spawn_pooled(spawn_worker, pooled_url, KIND_CONCURRENCY=limit, WORKER_QUEUE_MAXSIZE="4")

    # Waiting: on the POST itself, and on a GET.
    done = await api.post("/tasks", params={"wait": 20}, json={"message": "w", "kind": "echo"})
    assert done.status_code == 201 and done.json()["status"] == "completed", done.text
    later = await post(api, "record", payload={"seconds": 0.3})
    waited = await api.get(f"/tasks/{later['id']}", params={"wait": 20})
    assert waited.json()["status"] == "completed", waited.text

    # Canceling a pending task, then a running one.
    pending = await post(api, delay_seconds=3600)
    canceled = await api.patch(f"/tasks/{pending['id']}", json={"status": "canceled"})
    assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled"), canceled.text
    running = await post(api, "record", payload={"seconds": 30})
    await wait_status(db, [running["id"]], "processing")
    asked = await api.patch(f"/tasks/{running['id']}", json={"status": "canceled"})
    assert asked.status_code == 202, asked.text
    await wait_status(db, [running["id"]], "canceled")

    # A re-drive of a failed task runs it again.
    failed = await post(api, "record", payload={"fail": True}, max_attempts=1)
    await wait_status(db, [failed["id"]], "failed")
    retried = await api.post(f"/tasks/{failed['id']}/retry")
    assert retried.status_code == 200, retried.text
    again = await api.get(f"/tasks/{failed['id']}", params={"wait": 20})
    assert again.json()["status"] == "failed" and len(again.json()["errors"]) == 2, again.text

    # A fleet-wide kind limit: never more than 2 at once across both workers.
    await db.execute("DELETE FROM executions")
    limited = [(await post(api, "record", payload={"seconds": 0.4}))["id"] for _ in range(10)]
    await wait_status(db, limited, "completed", timeout_s=60)
    assert max_overlap(await executions(db)) == 2, "the limit is 2 and 10 tasks were waiting"


async def test_a_killed_workers_tasks_are_recovered_through_the_pooler(
    api: httpx.AsyncClient, pooled_url: str, spawn_worker: Spawn, db: asyncpg.Connection
) -> None:
    # All four wait before the worker starts, and run long enough that none ends
    # before the kill on a busy machine.
    ids = [(await post(api, "record", payload={"seconds": 3}))["id"] for _ in range(4)]
    doomed = spawn_pooled(spawn_worker, pooled_url, WORKER_LEASE_SECONDS="2")

    async def all_started() -> bool:
        return len(await executions(db)) == len(ids)

    await wait_for(all_started, timeout_s=30, what="the first worker to start every task")
    doomed.signal(signal.SIGKILL)
    doomed.wait(10)
    # The default lease: a stalled heartbeat must not hand its own tasks to a third run.
    rescuer = spawn_pooled(spawn_worker, pooled_url)
    await wait_status(db, ids, "completed", timeout_s=60)

    rows = await executions(db)
    assert {row["attempt"] for row in rows if row["pid"] == rescuer.process.pid} == {2}
    assert {str(row["task_id"]) for row in rows if row["attempt"] == 2} == set(ids)


def test_migrations_run_through_the_pooler(stores: Stores, pgbouncer: EmbeddedPgBouncer) -> None:
    name = f"test_empty_{uuid.uuid4().hex[:12]}"
    admin = plain_dsn(stores.admin_url)
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        upgrade(pgbouncer.url(name), pooler="transaction")
        tables = asyncio.run(
            _fetchval(
                plain_dsn(with_database(stores.admin_url, name)),
                "SELECT count(*) FROM pg_tables WHERE tablename IN ('tasks', 'alembic_version')",
            )
        )
        assert tables == 2
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _fetchval(dsn: str, query: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()
