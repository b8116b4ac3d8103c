"""Requests queued through the gateway reach a real upstream, and its answers
come back: as they were, retried by policy, or as a JSON error naming the task."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from app.config import Settings
from gateway.tests.conftest import Upstream, assert_error, gateway_client
from tasks.tests.fixtures import WorkerFactory, free_port, wait_for, wait_status


async def test_a_404_comes_back_at_once_after_one_call(
    gateway: httpx.AsyncClient, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker()
    response = await gateway.get("/missing/thing", params={"q": "1"})
    assert response.status_code == 404
    assert response.json() == {"detail": "not here"}
    assert [r["path"] for r in await upstream.requests()] == ["/missing/thing?q=1"]


async def test_500_twice_then_200_reaches_the_caller_as_200(
    gateway: httpx.AsyncClient, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker()
    response = await gateway.post("/flaky", params={"key": "k", "fails": 2}, content=b"x")
    assert response.status_code == 200, response.text
    assert response.json() == {"try": 3}
    assert len(await upstream.requests()) == 3


async def test_a_5xx_on_every_attempt_comes_back_as_the_last_5xx(
    gateway: httpx.AsyncClient, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker()
    response = await gateway.get("/flaky", params={"key": "k", "fails": 100})
    assert response.status_code == 500
    assert response.json() == {"try": 3}  # DEFAULT_MAX_ATTEMPTS: the third answer
    assert len(await upstream.requests()) == 3


async def test_an_upstream_that_is_down_gives_502_json_and_nothing_hangs(
    settings: Settings, start_full_worker: WorkerFactory
) -> None:
    down = {"gateway_target_base_url": f"http://127.0.0.1:{free_port()}", "gateway_wait_s": 60}
    await start_full_worker(**down)
    async with gateway_client(settings, **down) as gateway:
        queued = await gateway.post("/orders", json={"n": 1})
        body = assert_error(queued, 502)  # attempts spent on connection errors, long before 60 s
        assert body["status"] == "failed" and uuid.UUID(body["task_id"])
        assert [e["attempt"] for e in body["errors"]] == [1, 2, 3]
        assert all("could not connect" in e["error"] for e in body["errors"])
        passed = await gateway.get("/health")
        assert "could not connect" in assert_error(passed, 502)["detail"]


async def test_a_read_timeout_is_not_retried_by_default(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    await start_full_worker(gateway_read_timeout_s=0.3)
    try:
        async with gateway_client(settings) as gateway:
            response = await gateway.post("/charge", params={"hold": "h"}, json={"eur": 5})
        body = assert_error(response, 502)
        assert "did not answer in time" in body["detail"]
        assert len(body["errors"]) == 1, "sent once: it may have been done"
        assert len(await upstream.requests()) == 1
    finally:
        await upstream.release("h")


async def test_no_answer_within_the_wait_gives_504_with_the_task_id(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    await start_full_worker()
    # Long enough for a worker that has just started to claim it on a busy
    # machine: the upstream holds its answer, so the wait still runs out.
    async with gateway_client(settings, gateway_wait_s=3) as gateway:
        response = await gateway.get("/report", params={"hold": "h"})
    body = assert_error(response, 504)
    assert body["status"] == "processing" and "has not answered yet" in body["detail"]
    await upstream.release("h")
    await wait_status(db, [body["task_id"]], "completed")  # the request went on


async def test_a_request_not_started_before_its_caller_got_504_is_never_sent(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    async with gateway_client(settings, gateway_wait_s=0.3) as gateway:  # no worker yet
        response = await gateway.delete("/accounts/7")
    body = assert_error(response, 504)
    assert body["status"] == "pending" and "never will be" in body["detail"]
    await start_full_worker()
    await wait_status(db, [body["task_id"]], "expired")
    assert await upstream.requests() == []


async def test_a_priority_0_path_overtakes_a_backlog_of_listed_paths(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory, db: asyncpg.Connection
) -> None:
    listed = {"gateway_paths": "/report", "gateway_path_prefixes": "/batch/"}
    await start_full_worker(worker_queue_maxsize=1)

    async def pending(count: int) -> None:
        async def reached() -> bool:
            found = await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'pending'")
            return bool(found == count)

        await wait_for(reached, what=f"{count} queued request(s)")

    async with gateway_client(settings, **listed) as gateway:
        first = asyncio.create_task(gateway.get("/report", params={"hold": "h"}))
        await upstream.wait_requests(1)  # it holds the only slot
        backlog = [
            asyncio.create_task(gateway.get(path))
            for path in ("/report?n=1", "/batch/a?n=2", "/report/?n=3", "/batch?n=4")
        ]
        await pending(4)
        urgent = asyncio.create_task(gateway.get("/orders", params={"n": "urgent"}))
        await pending(5)
        await upstream.release("h")
        answers = await asyncio.gather(first, *backlog, urgent)
    assert [answer.status_code for answer in answers] == [200] * 6
    order = [record["path"] for record in await upstream.requests()]
    assert order[:2] == ["/report?hold=h", "/orders?n=urgent"], order
    rows = await db.fetch("SELECT message, priority FROM tasks")
    assert {row["message"]: row["priority"] for row in rows} == {
        "GET /report?hold=h": 9, "GET /report?n=1": 9, "GET /batch/a?n=2": 9,
        "GET /report/?n=3": 9, "GET /batch?n=4": 9, "GET /orders?n=urgent": 0,
    }  # fmt: skip


async def test_the_target_never_sees_more_than_its_concurrency_cap(
    settings: Settings, upstream: Upstream, start_full_worker: WorkerFactory
) -> None:
    cap = {"kind_concurrency": {"http": 2}}
    await start_full_worker(**cap)
    await start_full_worker(**cap)  # two workers of 10 slots: the cap is fleet-wide
    async with gateway_client(settings) as gateway:
        calls = [gateway.get("/slow", params={"ms": 150, "n": n}) for n in range(8)]
        answers = await asyncio.gather(*calls)
    assert [answer.status_code for answer in answers] == [200] * 8
    log = await upstream.log()
    assert len(log["requests"]) == 8
    assert log["max_in_flight"] == 2  # counted at the upstream
