"""The worker in process: slots, skips, outcomes, recovery and a graceful stop."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.lifespan import Resources
from tasks.doorbell import Doorbell
from tasks.handlers import load_handlers
from tasks.tests.fixtures import (
    Stores,
    WorkerFactory,
    app_client,
    make_settings,
    wait_for,
    wait_handler_started,
    wait_status,
)
from tasks.worker import Worker


async def post(
    client: httpx.AsyncClient,
    message: str,
    kind: str = "echo",
    *,
    max_attempts: int = 1,
    **payload: Any,
) -> str:
    body = {"message": message, "kind": kind, "payload": payload, "max_attempts": max_attempts}
    response = await client.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def get(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def executions(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM executions ORDER BY started_at"))


def max_overlap(rows: Sequence[asyncpg.Record]) -> int:
    """The most [started_at, finished_at] intervals open at one instant."""
    events = [(row["started_at"], 1) for row in rows] + [(row["finished_at"], -1) for row in rows]
    peak = current = 0
    for _, delta in sorted(events):  # at equal times an end (-1) sorts before a start
        current += delta
        peak = max(peak, current)
    return peak


async def test_running_tasks_never_exceed_the_slot_cap(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    ids = [await post(client, f"cap {n}", "record", seconds=0.3) for n in range(15)]
    await start_worker(worker_queue_maxsize=3)
    await wait_status(db, ids, "completed", timeout_s=30)

    rows = await executions(db)
    assert sorted(str(row["task_id"]) for row in rows) == sorted(ids)  # each one ran once
    assert all(row["finished_at"] is not None for row in rows)
    peak = max_overlap(rows)
    assert peak <= 3, f"{peak} handlers ran at once with 3 slots"
    assert peak == 3, "the worker never used all of its 3 slots"


async def test_canceled_tasks_are_skipped(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    start_worker: WorkerFactory,
) -> None:
    ids = [await post(client, f"task {n}", "record") for n in range(6)]
    canceled, kept = ids[::2], ids[1::2]
    for task_id in canceled:
        response = await client.patch(f"/tasks/{task_id}", json={"status": "canceled"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "canceled"

    await start_worker()
    await wait_status(db, kept, "completed")

    async def doorbell_empty() -> bool:
        return await resources.redis.zcard(resources.keys.ready("default")) == 0

    await wait_for(doorbell_empty, what="every id popped")
    assert sorted(str(row["task_id"]) for row in await executions(db)) == sorted(kept)
    for task_id in canceled:
        task = await get(client, task_id)
        assert task["status"] == "canceled"
        assert task["attempts"] == 0
        assert task["started_at"] is None


async def test_handler_error_fails_the_task(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = await post(client, "kaput", "boom", max_attempts=3)
    await start_worker()
    await wait_status(db, [task_id], "failed")

    task = await get(client, task_id)
    assert "boom: kaput" in task["error"]
    assert "ValueError" in task["error"]
    # Retried with backoff until the attempts ran out; every attempt's error is kept.
    assert task["attempts"] == 3
    assert [entry["attempt"] for entry in task["errors"]] == [1, 2, 3]
    assert all("boom: kaput" in entry["error"] for entry in task["errors"])
    assert task["result"] is None
    assert task["finished_at"] is not None


async def test_result_that_is_not_json_fails_the_task(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = await post(client, "odd result", "not_json")
    await start_worker()
    await wait_status(db, [task_id], "failed")

    task = await get(client, task_id)
    assert "result is not JSON" in task["error"]
    assert task["result"] is None
    assert task["attempts"] == 1


async def test_a_result_over_result_max_bytes_fails_the_attempt(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    small = await post(client, "x" * 80, "echo", max_attempts=1)
    large = await post(client, "x" * 200, "echo", max_attempts=1)
    await start_worker(result_max_bytes=150)
    await wait_status(db, [small], "completed")
    await wait_status(db, [large], "failed")

    task = await get(client, large)
    assert "over RESULT_MAX_BYTES (150)" in task["error"]
    assert task["result"] is None
    assert (await get(client, small))["result"] == {"message": "x" * 80}


async def test_sync_handlers_run_in_threads_without_blocking_the_loop(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    blocking = [await post(client, f"sync {n}", "blocking", seconds=2.0) for n in range(3)]
    echoes = [await post(client, f"echo {n}") for n in range(5)]
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    ticking = asyncio.create_task(ticker())
    try:
        await start_worker(worker_queue_maxsize=4)
        await wait_status(db, blocking + echoes, "completed", timeout_s=30)
    finally:
        ticking.cancel()

    longest_gap = max(later - earlier for earlier, later in itertools.pairwise(ticks))
    assert longest_gap < 1.0, f"the event loop stalled for {longest_gap:.2f}s"

    rows = await db.fetch(
        "SELECT kind, started_at, finished_at FROM tasks WHERE id = ANY($1::uuid[])",
        [uuid.UUID(task_id) for task_id in blocking + echoes],
    )
    sync_rows = [row for row in rows if row["kind"] == "blocking"]
    echo_rows = [row for row in rows if row["kind"] == "echo"]
    # The three sync handlers ran side by side, and the echo tasks did not wait for them.
    assert max(row["started_at"] for row in sync_rows) < min(
        row["finished_at"] for row in sync_rows
    )
    assert max(row["finished_at"] for row in echo_rows) < min(
        row["finished_at"] for row in sync_rows
    )


async def test_unknown_and_duplicate_ids_on_the_doorbell_are_skipped(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    start_worker: WorkerFactory,
) -> None:
    redis, ready = resources.redis, resources.keys.ready("default")
    task_id = await post(client, "rung twice", "record")  # the API rings once
    await redis.zadd(ready, {str(uuid.uuid4()): 0, "not-a-uuid": 0, "": 0})

    await start_worker(worker_queue_maxsize=1)
    await wait_status(db, [task_id], "completed")

    async def doorbell_empty() -> bool:
        return await redis.zcard(ready) == 0

    await wait_for(doorbell_empty, what="every id popped")
    await redis.zadd(ready, {task_id: 0})  # a late second ring of a finished task
    await wait_for(doorbell_empty, what="the second ring popped")
    later = await post(client, "still serving")
    await wait_status(db, [later], "completed")

    rows = await executions(db)
    assert [(str(row["task_id"]), row["attempt"]) for row in rows] == [(task_id, 1)]
    assert (await get(client, task_id))["attempts"] == 1


async def test_result_and_timestamps_are_recorded(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = await post(client, "hello taskline")
    await start_worker()
    await wait_status(db, [task_id], "completed")

    task = await get(client, task_id)
    assert task["result"] == {"message": "hello taskline"}
    assert task["error"] is None
    assert task["attempts"] == 1
    created, started, finished = (
        datetime.fromisoformat(task[name]) for name in ("created_at", "started_at", "finished_at")
    )
    assert created <= started <= finished


async def test_lost_doorbell_is_rung_again(
    settings: Settings,
    stores: Stores,
    db: asyncpg.Connection,
    resources: Resources,
    start_worker: WorkerFactory,
) -> None:
    skip_push = make_settings(
        settings.db_url, stores.redis_url, settings.redis_queue_name, fault_skip_push=True
    )
    async with app_client(skip_push) as http:
        task_id = await post(http, "never rung", "record")
    assert await resources.redis.zcard(resources.keys.ready("default")) == 0

    await start_worker()
    await wait_status(db, [task_id], "completed", timeout_s=15)
    assert len(await executions(db)) == 1


async def expire_lease(db: asyncpg.Connection, task_id: str, *, max_attempts: int) -> None:
    """Make the task look claimed by a worker that died a second ago."""
    await db.execute(
        """UPDATE tasks SET status = 'processing', attempts = 1, max_attempts = $2,
                            worker_id = 'dead', started_at = now() - interval '1 minute',
                            lease_expires_at = now() - interval '1 second'
            WHERE id = $1""",
        uuid.UUID(task_id),
        max_attempts,
    )


async def test_expired_lease_is_recovered_and_run_again(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = await post(client, "orphaned", "record")
    await expire_lease(db, task_id, max_attempts=3)

    await start_worker()
    await wait_status(db, [task_id], "completed", timeout_s=15)

    task = await get(client, task_id)
    assert task["attempts"] == 2
    rows = await executions(db)
    assert [(str(row["task_id"]), row["attempt"]) for row in rows] == [(task_id, 2)]


async def test_expired_lease_on_the_last_attempt_fails_the_task(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = await post(client, "orphaned for good", "record")
    await expire_lease(db, task_id, max_attempts=1)

    await start_worker()
    await wait_status(db, [task_id], "failed", timeout_s=15)

    task = await get(client, task_id)
    assert "worker lost" in task["error"]
    assert task["attempts"] == 1
    assert task["finished_at"] is not None
    assert await executions(db) == []


async def test_stop_lets_running_tasks_finish_and_leaves_the_rest_queued(
    settings: Settings, client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    ids = [await post(client, f"long {n}", "record", seconds=1) for n in range(6)]
    worker_settings = settings.model_copy(update={"worker_queue_maxsize": 2})
    worker = Worker(worker_settings, load_handlers(worker_settings.handler_modules))
    run = asyncio.create_task(worker.run())
    try:

        async def two_running() -> bool:
            return len(await executions(db)) == 2

        await wait_for(two_running, what="two handlers started")
        worker.request_stop()
        await asyncio.wait_for(run, 30)
    finally:
        if not run.done():
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)

    rows = await executions(db)
    started = {str(row["task_id"]) for row in rows}
    assert len(started) == 2
    assert all(row["finished_at"] is not None for row in rows)
    for task_id in started:
        assert (await get(client, task_id))["status"] == "completed"

    not_started = set(ids) - started
    for task_id in not_started:
        task = await get(client, task_id)
        assert task["status"] == "pending"
        assert task["attempts"] == 0
    queued = await resources.redis.zrange(resources.keys.ready("default"), 0, -1)
    assert set(queued) == not_started


def losing_cancels(
    call: Callable[..., Awaitable[Any]], in_flight: set[str]
) -> Callable[..., Awaitable[Any]]:
    """A store call that completes even when its task is canceled meanwhile, as
    every redis-py command can on Python 3.11 (see app/loops.py); made certain
    here rather than left to a race."""

    async def call_to_the_end(*args: Any, **kwargs: Any) -> Any:
        inner = asyncio.ensure_future(call(*args, **kwargs))
        in_flight.add(call.__name__)
        try:
            while True:
                try:
                    return await asyncio.shield(inner)
                except asyncio.CancelledError:
                    continue  # lost: only Task.cancelling() still knows
        finally:
            in_flight.discard(call.__name__)

    return call_to_the_end


async def test_a_worker_stops_promptly_when_store_calls_lose_its_cancel(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    in_flight: set[str] = set()
    for name in ("pop", "promote_due"):
        monkeypatch.setattr(Doorbell, name, losing_cancels(getattr(Doorbell, name), in_flight))
    worker = Worker(settings, load_handlers(settings.handler_modules))
    run = asyncio.create_task(worker.run())

    async def popping() -> bool:  # the puller blocks in pop for up to a second
        return "pop" in in_flight

    await wait_for(popping, what="the puller waiting on the doorbell")
    worker.request_stop()
    # A loop that did not stop would hold the shutdown for 5 s (_cancel's limit).
    done, _ = await asyncio.wait([run], timeout=4)
    if not done:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    assert done, "the worker did not stop before its wait for the loops ran out"
    assert "did not stop" not in caplog.text


# Timeouts, retries, cancel -------------------------------------------------------------


async def test_an_async_handler_past_its_timeout_is_canceled_and_the_attempt_fails(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    response = await client.post(
        "/tasks",
        json={"message": "slow", "kind": "record", "payload": {"seconds": 30},
              "timeout_seconds": 0.3, "max_attempts": 2},
    )  # fmt: skip
    task_id = response.json()["id"]
    await start_worker()
    await wait_status(db, [task_id], "failed")
    task = await get(client, task_id)
    assert task["attempts"] == 2
    assert [e["error"] for e in task["errors"]] == ["TimeoutError: timed out after 0.3s"] * 2
    # Both attempts started and neither ran to its end.
    runs = await db.fetch(
        "SELECT finished_at FROM executions WHERE task_id = $1", uuid.UUID(task_id)
    )
    assert [run["finished_at"] for run in runs] == [None, None]


async def test_a_thread_handler_past_its_timeout_fails_all_the_same(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    response = await client.post(
        "/tasks",
        json={"message": "stuck", "kind": "blocking", "payload": {"seconds": 2},
              "timeout_seconds": 0.2, "max_attempts": 1},
    )  # fmt: skip
    task_id = response.json()["id"]
    await start_worker()
    await wait_status(db, [task_id], "failed")
    assert "timed out after 0.2s" in (await get(client, task_id))["error"]


async def test_a_failed_attempt_is_retried_after_a_backoff(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = await post(client, "flaky", "record", max_attempts=3, fail=True)
    await start_worker(retry_backoff_base_s=0.3, retry_backoff_cap_s=0.3)
    await wait_status(db, [task_id], "failed")
    runs = await db.fetch(
        "SELECT attempt, started_at FROM executions WHERE task_id = $1 ORDER BY attempt",
        uuid.UUID(task_id),
    )
    assert [run["attempt"] for run in runs] == [1, 2, 3]
    gaps = [
        later["started_at"] - earlier["started_at"] for earlier, later in itertools.pairwise(runs)
    ]
    # The jitter keeps each wait between half the backoff and all of it.
    assert all(gap.total_seconds() >= 0.15 for gap in gaps), gaps


async def test_a_missed_cancel_announcement_is_caught_by_the_heartbeat(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = await post(client, "long", "record", seconds=30)
    await start_worker(worker_lease_s=1.5)
    await wait_handler_started(db, task_id)
    # Flag it in the database only, as if the announcement on Redis was lost.
    await db.execute("UPDATE tasks SET cancel_requested = true WHERE id = $1", uuid.UUID(task_id))
    await wait_status(db, [task_id], "canceled")
    runs = await db.fetch(
        "SELECT finished_at FROM executions WHERE task_id = $1", uuid.UUID(task_id)
    )
    assert [run["finished_at"] for run in runs] == [None]


async def test_a_claim_lost_by_a_crash_and_made_again_here_does_not_start_a_second_run(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    start_worker: WorkerFactory,
) -> None:
    """A PostgreSQL crash may forget a claim (CLAIM_SYNCHRONOUS_COMMIT=off): the
    row is pending again and rung again, and this worker claims it anew, as the
    same attempt, while the first run still goes on. That run is the attempt's."""
    task_id = await post(client, "long", "record", seconds=5)
    await start_worker()
    await wait_handler_started(db, task_id)
    # What the crash leaves: the row as it was before the claim, rung again.
    await db.execute(
        "UPDATE tasks SET status = 'pending', attempts = attempts - 1, worker_id = NULL,"
        " started_at = NULL, lease_expires_at = NULL WHERE id = $1",
        uuid.UUID(task_id),
    )
    redis, ready = resources.redis, resources.keys.ready("default")
    await redis.zadd(ready, {task_id: 0})

    async def claimed_again() -> bool:
        status = await db.fetchval("SELECT status FROM tasks WHERE id = $1", uuid.UUID(task_id))
        return bool(status == "processing" and await redis.zcard(ready) == 0)

    await wait_for(claimed_again, timeout_s=4, what="the task claimed again")
    await wait_status(db, [task_id], "completed")
    rows = await executions(db)
    assert [(str(row["task_id"]), row["attempt"]) for row in rows] == [(task_id, 1)]
    assert rows[0]["finished_at"] is not None
    assert (await get(client, task_id))["attempts"] == 1


# Delays -----------------------------------------------------------------------------------


async def test_a_delayed_task_waits_for_its_time_and_then_runs(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    await start_worker()
    later = await client.post("/tasks", json={"message": "later", "delay_seconds": 1.5})
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    planned = await client.post("/tasks", json={"message": "planned", "run_at": at})
    now = await client.post("/tasks", json={"message": "now"})
    for response in (later, planned, now):
        assert response.status_code == 201, response.text
    ids = [response.json()["id"] for response in (later, planned, now)]
    await wait_status(db, ids, "completed")
    rows = await db.fetch(
        "SELECT id, created_at, run_at, started_at FROM tasks WHERE id = ANY($1::uuid[])",
        [uuid.UUID(task_id) for task_id in ids],
    )
    by_id = {str(row["id"]): row for row in rows}
    for task_id in ids[:2]:
        row = by_id[task_id]
        assert row["run_at"] > row["created_at"] and row["started_at"] >= row["run_at"], row
    assert by_id[ids[2]]["run_at"] == by_id[ids[2]]["created_at"]
    # Not early, but not much later either: the promoter runs four times a second.
    assert by_id[ids[0]]["started_at"] - by_id[ids[0]]["run_at"] < timedelta(seconds=5)


async def test_delay_input_is_checked(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    bad = [
        {"message": "x", "delay_seconds": -1},
        {"message": "x", "run_at": "2030-01-01T00:00:00"},  # no time zone
        {"message": "x", "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 1},
    ]
    for body in bad:
        response = await client.post("/tasks", json=body)
        assert response.status_code == 422, (body, response.text)
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


# Expiry -----------------------------------------------------------------------------------


async def test_a_task_not_started_before_it_expires_ends_expired_and_never_runs(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    await start_worker()
    # It may not start for 2 s, but it expires after 0.5 s.
    doomed = await client.post(
        "/tasks",
        json={"message": "late", "kind": "record", "delay_seconds": 2, "ttl_seconds": 0.5},
    )
    fine = await client.post(
        "/tasks", json={"message": "in time", "kind": "record", "ttl_seconds": 3600}
    )
    assert (doomed.status_code, fine.status_code) == (201, 201)
    await wait_status(db, [doomed.json()["id"]], "expired")
    await wait_status(db, [fine.json()["id"]], "completed")
    task = await get(client, doomed.json()["id"])
    assert task["error"].startswith("expired") and task["finished_at"] is not None
    ran = await db.fetchval(
        "SELECT count(*) FROM executions WHERE task_id = $1", uuid.UUID(doomed.json()["id"])
    )
    assert ran == 0
    # Waiting a little longer does not bring it back.
    await asyncio.sleep(2.5)  # past its delay: the scheduled doorbell rings, the claim refuses
    assert (await get(client, doomed.json()["id"]))["status"] == "expired"
    assert await db.fetchval("SELECT count(*) FROM executions") == 1
