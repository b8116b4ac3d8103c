"""Real processes: an API, Python workers and HTTP consumers on one queue, and a
consumer killed with SIGKILL while it holds leases."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest

from app.lifespan import Resources
from tasks import events
from tasks.tests import fixtures
from tasks.tests.fixtures import WorkerProcess
from topics.tests.conftest import HANDLERS, create_queue, lease, output_of, stop, wait_for

SpawnApi = Callable[..., Awaitable[str]]
SpawnConsumer = Callable[..., subprocess.Popen[bytes]]
SpawnWorker = Callable[..., WorkerProcess]


async def count(db: asyncpg.Connection, sql: str, *args: object) -> int:
    return int(await db.fetchval(sql, *args))


async def publish_in_batches(http: httpx.AsyncClient, queue: str, total: int) -> None:
    for start in range(0, total, 500):
        batch = [{"data": n} for n in range(start, min(total, start + 500))]
        response = await http.post(f"/queues/{queue}/messages", json={"messages": batch})
        assert response.status_code == 201, response.text


async def all_completed(db: asyncpg.Connection, total: int, timeout_s: float) -> None:
    async def done() -> bool:
        return await count(db, "SELECT count(*) FROM tasks WHERE status = 'completed'") == total

    await wait_for(done, timeout_s=timeout_s, what=f"{total} messages acked")


async def blocked_clients(resources: Resources, at_least: int) -> None:
    async def blocked() -> bool:
        return await fixtures.blocked_clients(resources.redis) >= at_least

    await wait_for(blocked, timeout_s=30, what=f"{at_least} consumers waiting on the doorbell")


@pytest.mark.chaos
async def test_a_python_worker_and_two_http_consumers_share_a_queue(
    spawn_api: SpawnApi,
    spawn_worker: SpawnWorker,
    spawn_consumer: SpawnConsumer,
    deliveries: asyncpg.Connection,
    resources: Resources,
) -> None:
    db, total = deliveries, 2_000
    url = await spawn_api()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await create_queue(http, "mixed")
        consumers = [spawn_consumer(url, "mixed", "--name", f"http-{n}") for n in (1, 2)]
        worker = spawn_worker(TASKLINE_HANDLERS=HANDLERS, WORKER_QUEUES="mixed")
        await blocked_clients(resources, 3)  # all three are waiting before the first message
        await publish_in_batches(http, "mixed", total)
        await all_completed(db, total, timeout_s=60)
    for consumer in consumers:
        assert await stop(consumer) == 0
    worker.signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 30) == 0, worker.log()

    by_consumer = dict(
        await db.fetch("SELECT consumer, count(*) FROM deliveries GROUP BY consumer")
    )
    assert set(by_consumer) == {"worker", "http-1", "http-2"}, by_consumer
    assert sum(by_consumer.values()) == total  # none lost, none delivered twice
    assert await count(db, "SELECT count(DISTINCT message_id) FROM deliveries") == total
    assert await count(db, "SELECT count(*) FROM deliveries WHERE finished_at IS NULL") == 0
    overlapping = await count(
        db,
        "SELECT count(*) FROM deliveries a JOIN deliveries b ON a.message_id = b.message_id"
        " AND a.ctid < b.ctid AND a.started_at < b.finished_at AND b.started_at < a.finished_at",
    )
    assert overlapping == 0  # no message held by two at once


@pytest.mark.chaos
async def test_leases_of_a_sigkilled_consumer_come_back_after_their_deadline(
    spawn_api: SpawnApi,
    spawn_worker: SpawnWorker,
    spawn_consumer: SpawnConsumer,
    deliveries: asyncpg.Connection,
) -> None:
    db = deliveries
    url = await spawn_api()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await create_queue(http, "work")
        await publish_in_batches(http, "work", 50)
        holding_args = ("--name", "holder", "--hold", "50", "--visibility", "4")
        holder = spawn_consumer(url, "work", *holding_args)

        async def holding() -> bool:
            # Its answer, not only the committed claim: an API that loses its
            # client before answering gives the leases back (topics/consuming.py).
            if "holding 50" not in output_of(holder):
                return False
            held = "SELECT count(*) FROM tasks WHERE worker_id LIKE 'http:holder:%'"
            return await count(db, held + " AND status = 'processing'") == 50

        await wait_for(holding, timeout_s=30, what="the consumer to hold 50 leases")
        holder.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(holder.wait, 10) == -signal.SIGKILL
        assert await lease(http, "work", max_messages=100) == []  # held until the deadline

        # A worker of another queue: its reconcile recovers expired leases of every queue.
        spawn_worker(WORKER_QUEUES="elsewhere")
        rescuer = spawn_consumer(url, "work", "--name", "rescuer")
        await all_completed(db, 50, timeout_s=30)
    assert await stop(rescuer) == 0
    rows = await db.fetch("SELECT consumer, attempt FROM deliveries")
    assert sorted((row["consumer"], row["attempt"]) for row in rows) == [("rescuer", 2)] * 50


@pytest.mark.chaos
async def test_a_message_a_python_handler_fails_for_the_last_time_is_dead_lettered(
    spawn_api: SpawnApi,
    spawn_worker: SpawnWorker,
    deliveries: asyncpg.Connection,
    resources: Resources,
) -> None:
    db = deliveries
    url = await spawn_api()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await create_queue(http, "dead")
        await create_queue(http, "work", message_max_deliveries=2, dead_queue_id="dead")
        response = await http.post("/queues/work/messages", json={"data": {"fail": True}})
        [published] = response.json()["messages"]
        spawn_worker(TASKLINE_HANDLERS=HANDLERS, WORKER_QUEUES="work")

        async def dead_lettered() -> bool:
            sql = "SELECT count(*) FROM tasks WHERE queue = 'dead' AND status = 'pending'"
            return await count(db, sql) == 1

        await wait_for(dead_lettered, timeout_s=30, what="the message in the dead queue")
        [dead] = await lease(http, "dead", wait_seconds=5)
    assert dead["id"] == published["id"] and dead["delivery_attempts"] == 1
    attempts = await db.fetch("SELECT attempt FROM deliveries ORDER BY attempt")
    assert [row["attempt"] for row in attempts] == [1, 2]

    async def announced() -> list[tuple[str, str, int]]:  # as a nack would have been
        entries = await resources.redis.xrange(resources.keys.events)
        found = [e for entry in entries for e in events.decode(*entry)]
        return [(e.event, e.queue, e.attempt) for e in found if str(e.task_id) == dead["id"]]

    async def all_announced() -> bool:
        return len(await announced()) == 6  # and its lease from the dead queue

    await wait_for(all_announced, timeout_s=30, what="the worker's events")
    found = await announced()
    leased_again = ("started", "dead", 1)  # by the API, maybe before the worker's last
    assert leased_again in found and [e for e in found if e != leased_again] == [
        ("created", "work", 0), ("started", "work", 1), ("retried", "work", 1),
        ("started", "work", 2), ("dead_lettered", "dead", 0),
    ]  # fmt: skip
