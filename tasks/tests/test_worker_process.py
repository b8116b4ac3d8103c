"""Real `python worker.py` processes: signals, shutdown grace, a fleet, a Redis outage."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.config import Settings
from app.embedded import EmbeddedValkey
from app.lifespan import Resources
from tasks.tests.fixtures import (
    WorkerProcess,
    app_client,
    free_port,
    make_settings,
    status_counts,
    wait_for,
    wait_log,
    wait_status,
)

Spawn = Callable[..., WorkerProcess]


async def post(client: httpx.AsyncClient, message: str, kind: str = "echo", **payload: Any) -> str:
    body = {"message": message, "kind": kind, "payload": payload}
    response = await client.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def post_many(
    client: httpx.AsyncClient, count: int, kind: str = "echo", **payload: Any
) -> list[str]:
    gate = asyncio.Semaphore(10)

    async def one(n: int) -> str:
        async with gate:
            return await post(client, f"task {n}", kind, **payload)

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def count_executions(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM executions"))


async def wait_executions(db: asyncpg.Connection, at_least: int, timeout_s: float = 30.0) -> None:
    async def started() -> bool:
        return await count_executions(db) >= at_least

    await wait_for(started, timeout_s=timeout_s, what=f"{at_least} execution(s) started")


async def exit_code(worker: WorkerProcess, timeout_s: float) -> int:
    return await asyncio.to_thread(worker.wait, timeout_s)


async def test_worker_process_completes_tasks(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    worker = spawn_worker()
    ids = await post_many(client, 10)
    await wait_status(db, ids, "completed")

    worker.signal(signal.SIGTERM)
    assert await exit_code(worker, 20) == 0, worker.log()


async def test_sigterm_finishes_running_tasks_and_runs_none_twice(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    ids = await post_many(client, 50, "record", seconds=0.5)
    first = spawn_worker(WORKER_QUEUE_MAXSIZE="5")

    async def busy_with_work_left() -> bool:
        return await count_executions(db) >= 5 and (await status_counts(db)).get("pending", 0) > 0

    await wait_for(busy_with_work_left, timeout_s=30, what="5 executions with work left")
    first.signal(signal.SIGTERM)
    assert await exit_code(first, 30) == 0, first.log()

    counts = await status_counts(db)
    assert set(counts) <= {"pending", "completed"}, counts
    assert counts.get("pending", 0) > 0, "the worker kept taking work after SIGTERM"
    completed = await db.fetch("SELECT id FROM tasks WHERE status = 'completed'")
    ran = await db.fetch("SELECT task_id, finished_at FROM executions")
    assert {row["task_id"] for row in ran} == {row["id"] for row in completed}
    assert all(row["finished_at"] is not None for row in ran)

    second = spawn_worker(WORKER_QUEUE_MAXSIZE="5")
    await wait_status(db, ids, "completed", timeout_s=40)
    rows = await db.fetch("SELECT task_id, count(*) AS runs FROM executions GROUP BY task_id")
    assert sorted(str(row["task_id"]) for row in rows) == sorted(ids)
    assert [row for row in rows if row["runs"] != 1] == [], "some tasks ran twice"
    assert await count_executions(db) == 50
    second.signal(signal.SIGTERM)
    assert await exit_code(second, 30) == 0, second.log()


async def test_tasks_past_the_shutdown_grace_go_back_to_pending(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources, spawn_worker: Spawn
) -> None:
    ids = await post_many(client, 3, "record", seconds=30)
    worker = spawn_worker(WORKER_SHUTDOWN_TIMEOUT="1")
    await wait_executions(db, 3)

    worker.signal(signal.SIGTERM)
    assert await exit_code(worker, 10) == 0, worker.log()

    rows = await db.fetch(
        "SELECT status, attempts, worker_id, lease_expires_at FROM tasks WHERE id = ANY($1)",
        [uuid.UUID(task_id) for task_id in ids],
    )
    assert len(rows) == 3
    for row in rows:
        assert row["status"] == "pending"
        assert row["attempts"] == 0
        assert row["worker_id"] is None
        assert row["lease_expires_at"] is None
    queued = await resources.redis.zrange(resources.keys.ready("default"), 0, -1)
    assert set(ids) <= set(queued)


async def test_a_second_signal_exits_at_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    await post_many(client, 2, "record", seconds=30)
    worker = spawn_worker(WORKER_SHUTDOWN_TIMEOUT="30")
    await wait_executions(db, 2)

    worker.signal(signal.SIGTERM)
    await wait_log(worker, "stopping")
    began = time.monotonic()
    worker.signal(signal.SIGINT)
    code = await exit_code(worker, 10)
    assert code != 0, worker.log()
    assert time.monotonic() - began < 10
    assert (await status_counts(db)).get("completed", 0) == 0


async def test_several_workers_share_the_work_without_running_any_twice(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    workers = [spawn_worker() for _ in range(3)]
    for worker in workers:
        await wait_log(worker, "started")

    ids = await post_many(client, 300, "record")
    await wait_status(db, ids, "completed", timeout_s=45)

    rows = await db.fetch("SELECT task_id, pid FROM executions")
    assert len(rows) == 300
    assert sorted(str(row["task_id"]) for row in rows) == sorted(ids)
    pids = {row["pid"] for row in rows}
    assert pids <= {worker.process.pid for worker in workers}
    assert len(pids) > 1, "one worker did all the work"
    for worker in workers:
        assert worker.process.poll() is None, worker.log()


async def test_worker_survives_redis_going_away(
    settings: Settings,
    database_url: str,
    db: asyncpg.Connection,
    spawn_worker: Spawn,
    tmp_path: Path,
) -> None:
    valkey = EmbeddedValkey(tmp_path / "outage-valkey" / "data", free_port())
    try:
        await asyncio.to_thread(valkey.start)
        worker = spawn_worker(REDIS_URL=valkey.url())
        settings_here = make_settings(database_url, valkey.url(), settings.redis_queue_name)
        async with app_client(settings_here) as http:
            before = await post_many(http, 5)
            await wait_status(db, before, "completed")

            await asyncio.to_thread(valkey.stop)
            await asyncio.sleep(2)  # let the outage last
            assert worker.process.poll() is None, worker.log()
            refused = await http.post("/tasks", json={"message": "during"})
            assert refused.status_code == 503
            assert "redis" in refused.json()["detail"]

            await asyncio.to_thread(valkey.start)
            # The first POST after the restart already succeeds: dead pooled
            # connections are replaced, not reported as an outage.
            after = await post_many(http, 5)
            await wait_status(db, after, "completed")
        assert worker.process.poll() is None, worker.log()
        worker.signal(signal.SIGTERM)
        assert await exit_code(worker, 20) == 0, worker.log()
    finally:
        valkey.stop()


async def test_json_logs_carry_the_task_and_never_its_payload_or_result(
    client: httpx.AsyncClient, db: asyncpg.Connection, spawn_worker: Spawn
) -> None:
    worker = spawn_worker(LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    failing = await client.post(
        "/tasks",
        json={"message": "kaboom", "kind": "boom", "max_attempts": 1,
              "payload": {"secret": "PAYLOAD-MARKER"}},
    )  # fmt: skip
    echoed = await post(client, "RESULT-MARKER")
    await wait_status(db, [failing.json()["id"]], "failed")
    await wait_status(db, [echoed], "completed")
    worker.signal(signal.SIGTERM)
    assert await exit_code(worker, 30) == 0

    text = worker.log()
    entries = [json.loads(line) for line in text.splitlines()]  # one JSON object a line
    [failure] = [entry for entry in entries if entry["message"].startswith("failed:")]
    assert {key: failure[key] for key in ("task_id", "kind", "queue", "attempt")} == {
        "task_id": failing.json()["id"], "kind": "boom", "queue": "default", "attempt": 1,
    }  # fmt: skip
    assert failure["worker_id"] and all(entry.get("worker_id") for entry in entries
                                        if entry["logger"] == "taskline.worker")  # fmt: skip
    assert "PAYLOAD-MARKER" not in text and "RESULT-MARKER" not in text
