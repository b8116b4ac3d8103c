"""Fixtures: real PostgreSQL and a real Redis-protocol server for every test.

The embedded servers start once per session in a temporary folder on free
ports, unless TEST_DATABASE_URL / TEST_REDIS_URL name servers to use. Each test
gets its own database cloned from a migrated template and its own Redis key
namespace, both removed afterwards. With TEST_REDIS_CLUSTER=true the tests run
on a Redis Cluster: TEST_REDIS_URL's, or three embedded Valkey nodes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis, RedisCluster

from app.config import Settings
from app.embedded import EmbeddedPostgres, EmbeddedValkey
from app.lifespan import Resources, close_resources, open_resources
from app.migrate import upgrade
from main import create_app
from tasks.handlers import load_handlers
from tasks.tests import handlers as test_handlers
from tasks.tests.cluster import ValkeyCluster
from tasks.tests.databases import DatabasePool
from tasks.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
TEST_HANDLERS = "tasks.tests.handlers"

EXECUTIONS_DDL = """
CREATE TABLE executions (
    task_id uuid NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@dataclass
class Stores:
    admin_url: str  # SQLAlchemy URL of a maintenance database
    redis_url: str
    postgres: EmbeddedPostgres | None
    valkey: EmbeddedValkey | None
    template: str = ""
    cluster: ValkeyCluster | None = None
    redis_cluster: bool = False  # redis_url names a node of a cluster
    databases: DatabasePool | None = None


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def stores() -> Iterator[Stores]:
    # Not tmp_path_factory: pytest prunes old numbered folders, even those of
    # another run still going on the same machine.
    with tempfile.TemporaryDirectory(prefix="taskline-test-") as base:
        yield from _stores(Path(base))


def _stores(base: Path) -> Iterator[Stores]:
    found = Stores(
        admin_url=os.environ.get("TEST_DATABASE_URL", ""),
        redis_url=os.environ.get("TEST_REDIS_URL", ""),
        postgres=None,
        valkey=None,
        template=f"taskline_template_{os.getpid()}",
        redis_cluster=os.environ.get("TEST_REDIS_CLUSTER", "").lower() == "true",
    )
    try:
        if not found.admin_url:
            found.postgres = EmbeddedPostgres(base / "postgres", free_port(), database="postgres")
            found.postgres.start()
            found.admin_url = found.postgres.url()
        found.admin_url = found.admin_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        if not found.redis_url and found.redis_cluster:
            found.cluster = ValkeyCluster(base / "cluster")
            found.cluster.start()
            found.redis_url = found.cluster.url
        elif not found.redis_url:
            found.valkey = EmbeddedValkey(base / "valkey", free_port())
            found.valkey.start()
            found.redis_url = found.valkey.url()
        if found.redis_cluster:
            CLUSTER_URLS.add(found.redis_url)
        _make_template(found)
        found.databases = DatabasePool(plain_dsn(found.admin_url), found.template)
        found.databases.start()
        yield found
        found.databases.stop()
        _run(_admin(found.admin_url, f'DROP DATABASE IF EXISTS "{found.template}" WITH (FORCE)'))
    finally:
        if found.valkey is not None:
            found.valkey.stop()
        if found.cluster is not None:
            found.cluster.stop()
        if found.postgres is not None:
            found.postgres.stop()


def _make_template(found: Stores) -> None:
    _run(_admin(found.admin_url, f'DROP DATABASE IF EXISTS "{found.template}" WITH (FORCE)'))
    _run(_admin(found.admin_url, f'CREATE DATABASE "{found.template}"'))
    template_url = with_database(found.admin_url, found.template)
    upgrade(template_url)
    _run(_admin(template_url, EXECUTIONS_DDL))


@pytest.fixture
async def database_url(stores: Stores) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own (tasks/tests/databases.py)."""
    assert stores.databases is not None
    name = await asyncio.to_thread(stores.databases.take)
    yield with_database(stores.admin_url, name)
    await test_handlers.close_pools()
    stores.databases.give_back(name)


@pytest.fixture
async def namespace(stores: Stores) -> AsyncIterator[str]:
    """This test's own Redis key namespace, deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    yield prefix
    await delete_namespace(stores.redis_url, prefix)


async def delete_namespace(redis_url: str, prefix: str) -> None:
    """Every key of a namespace, on a single Redis or every node of a cluster."""
    redis: Redis | RedisCluster
    redis = (
        RedisCluster.from_url(redis_url) if redis_url in CLUSTER_URLS else Redis.from_url(redis_url)
    )
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        if keys:  # the cluster client sends each slot its own DEL
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.fixture
def settings(
    database_url: str, namespace: str, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("TASKLINE_TEST_RECORD_DSN", plain_dsn(database_url))
    return make_settings(database_url, stores.redis_url, namespace)


async def blocked_clients(redis: Redis | RedisCluster) -> int:
    """Clients blocked on a command (a BZMPOP, an XREAD BLOCK), on every node of a cluster."""
    if isinstance(redis, RedisCluster):
        infos: Any = await redis.info("clients", target_nodes=RedisCluster.ALL_NODES)
        return sum(int(info["blocked_clients"]) for info in infos.values())
    return int((await redis.info("clients"))["blocked_clients"])


# Redis URLs that name a node of a cluster: settings made for them say so.
CLUSTER_URLS: set[str] = set()


def make_settings(database_url: str, redis_url: str, namespace: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_cluster": redis_url in CLUSTER_URLS,
        "redis_queue_name": namespace,
        "taskline_handlers": TEST_HANDLERS,
        "worker_shutdown_timeout_s": 5.0,
        "reconcile_interval_s": 0.5,
        "reconcile_grace_s": 1.0,
        "retry_backoff_base_s": 0.05,
        "retry_backoff_cap_s": 0.5,
        "db_pool_size": 5,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    opened = open_resources(settings)
    yield opened
    await close_resources(opened)


@asynccontextmanager
async def app_client(
    settings: Settings, *, raise_app_exceptions: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """The API in this process on these settings, its lifespan run; by default a
    500 comes back as an answer, not as an exception."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings, raise_app_exceptions=True) as http:
        yield http


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to this test's database, for looking at rows directly."""
    conn = await asyncpg.connect(plain_dsn(database_url))
    yield conn
    await conn.close()


WorkerFactory = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(settings: Settings) -> AsyncIterator[WorkerFactory]:
    """Start in-process workers; every one is stopped at the end of the test."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> Worker:
        if "redis_url" in overrides:  # a server of the test's own: a cluster or not
            overrides.setdefault("redis_cluster", overrides["redis_url"] in CLUSTER_URLS)
        worker_settings = settings.model_copy(update=overrides)
        worker = Worker(worker_settings, load_handlers(worker_settings.handler_modules))
        task = asyncio.create_task(worker.run(), name="test-worker")
        started.append((worker, task))
        return worker

    yield start
    for worker, _ in started:
        if not worker.stop_requested.is_set():  # a second request exits the process at once
            worker.request_stop()
    for _, task in started:
        await asyncio.wait_for(task, 30)


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Poll `predicate` until it holds; fail the test past the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_handler_started(db: asyncpg.Connection, task_id: str) -> None:
    """Wait until a `record` task's handler has put its run on record: claimed
    is not enough for a test that needs the handler running."""

    async def started() -> bool:
        found = "SELECT count(*) FROM executions WHERE task_id = $1"
        return bool(await db.fetchval(found, uuid.UUID(task_id)))

    await wait_for(started, timeout_s=20, what="the handler to start")


async def wait_status(
    db: asyncpg.Connection, ids: Sequence[str], status: str, timeout_s: float = 30.0
) -> None:
    """Wait until every one of `ids` (as strings) has `status`."""
    wanted = [uuid.UUID(task_id) for task_id in ids]

    async def reached() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = $2", wanted, status
        )
        return bool(count == len(wanted))

    await wait_for(reached, timeout_s=timeout_s, what=f"{len(ids)} task(s) {status}")


async def status_counts(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM tasks GROUP BY status")
    return {row["status"]: row["n"] for row in rows}


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def spawn_worker(
    settings: Settings, database_url: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `python worker.py` (or `python ARGS...`) as a real process; killed at
    the end if still running."""
    spawned: list[WorkerProcess] = []

    def spawn(*args: str, **env_overrides: str) -> WorkerProcess:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": settings.cache_url,
            "REDIS_QUEUE_NAME": settings.redis_queue_name,
            "TASKLINE_HANDLERS": TEST_HANDLERS,
            "TASKLINE_TEST_RECORD_DSN": plain_dsn(database_url),
            "WORKER_SHUTDOWN_TIMEOUT": "10",
            "RECONCILE_INTERVAL_SECONDS": "0.5",
            "RECONCILE_GRACE_SECONDS": "1",
            "RETRY_BACKOFF_BASE_SECONDS": "0.05",
            "RETRY_BACKOFF_CAP_SECONDS": "0.5",
            "LOG_LEVEL": "INFO",
            **env_overrides,
        }
        if "REDIS_CLUSTER" not in env_overrides:  # the test may name a Redis of its own
            env["REDIS_CLUSTER"] = str(env["REDIS_URL"] in CLUSTER_URLS).lower()
        log_path = tmp_path / f"worker-{len(spawned)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, *(args or ["worker.py"])],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        spawned.append(WorkerProcess(process, log_path))
        return spawned[-1]

    yield spawn
    for worker in spawned:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
def spawn_api(
    settings: Settings, database_url: str, tmp_path: Path
) -> Iterator[Callable[..., Awaitable[str]]]:
    """`taskline api` as a real process on a free port, once ready: its URL.
    Stopped at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    async def spawn(*args: str, **env_overrides: str) -> str:
        port = free_port()
        env = {
            **os.environ,
            "API_PORT": str(port),
            "DATABASE_URL": database_url,
            "REDIS_URL": settings.cache_url,
            "REDIS_QUEUE_NAME": settings.redis_queue_name,
            "TASKLINE_HANDLERS": TEST_HANDLERS,
            "LOG_LEVEL": "WARNING",
            **env_overrides,
        }
        if "REDIS_CLUSTER" not in env_overrides:  # the test may name a Redis of its own
            env["REDIS_CLUSTER"] = str(env["REDIS_URL"] in CLUSTER_URLS).lower()
        log_path = tmp_path / f"api-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "taskline", "api", *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: uvicorn's workers stop with it
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url) as http:

            async def ready() -> bool:
                assert process.poll() is None, log_path.read_text()
                try:
                    return (await http.get("/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, timeout_s=30, what="the API process to be ready")
        return url

    spawn.processes = started  # type: ignore[attr-defined]
    yield spawn
    for process in started:
        for signum in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL only if SIGTERM was not enough
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signum)
                with suppress(subprocess.TimeoutExpired):
                    process.wait(20)


@pytest.fixture(scope="session")
def valkey_cluster(stores: Stores) -> Iterator[ValkeyCluster]:
    """A Valkey cluster of three masters whose nodes a test may restart: the
    session's own under TEST_REDIS_CLUSTER=true, else one started on first use."""
    if stores.cluster is not None:
        yield stores.cluster
        return
    with tempfile.TemporaryDirectory(prefix="taskline-cluster-") as base:
        cluster = ValkeyCluster(Path(base))
        cluster.start()
        CLUSTER_URLS.add(cluster.url)
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
async def valkey(tmp_path: Path) -> AsyncIterator[EmbeddedValkey]:
    """A Redis of the test's own, to flush or kill without touching other tests' keys."""
    server = EmbeddedValkey(tmp_path / "private-valkey" / "data", free_port())
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def wait_log(worker: WorkerProcess, text: str, timeout_s: float = 30.0) -> None:
    """Wait until a spawned worker has logged `text`; fails at once if it exited."""

    async def logged() -> bool:
        assert worker.process.poll() is None, f"worker exited:\n{worker.log()}"
        return text in worker.log()

    await wait_for(logged, timeout_s=timeout_s, what=f"{text!r} in the worker log")
