"""Leasing over HTTP: lease, ack, nack, extend, deadlines, long-polls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx

from app.config import Settings
from app.lifespan import Resources
from main import create_app
from tasks.tests.fixtures import blocked_clients
from tasks.worker import maintenance
from topics.tests.conftest import (
    create_queue,
    expire_and_recover,
    lease,
    put,
    settle,
    wait_for,
)


async def blocked(resources: Resources) -> bool:
    """Whether a client is blocked on Redis (a lease waiting on the doorbell)."""
    return await blocked_clients(resources.redis) >= 1


async def status_of(db: asyncpg.Connection, message_id: str) -> str:
    return str(await db.fetchval("SELECT status FROM tasks WHERE id = $1::uuid", message_id))


async def test_lease_then_ack_and_the_message_is_gone(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_queue(client, "work")
    [message_id] = await put(client, "work", {"n": 1})

    [message] = await lease(client, "work")
    assert message["id"] == message_id and message["data"] == {"n": 1}
    assert message["delivery_attempts"] == 1 and message["receipt_handle"]
    assert await status_of(db, message_id) == "processing"

    assert (await settle(client, message)).status_code == 204
    assert await status_of(db, message_id) == "completed"
    assert await lease(client, "work") == []
    again = await settle(client, message)  # acked already: the handle is stale
    assert again.status_code == 409 and again.json()["detail"]


async def test_nack_makes_it_visible_again_with_a_second_delivery(
    client: httpx.AsyncClient,
) -> None:
    await create_queue(client, "work")
    await put(client, "work", "x")
    [first] = await lease(client, "work")
    assert (await settle(client, first, "nack")).status_code == 204

    [second] = await lease(client, "work")
    assert second["id"] == first["id"] and second["delivery_attempts"] == 2
    assert second["receipt_handle"] != first["receipt_handle"]
    assert (await settle(client, first)).status_code == 409
    assert (await settle(client, second)).status_code == 204


async def test_nack_with_a_delay_hides_it_until_then(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_queue(client, "work")
    [message_id] = await put(client, "work", "x")
    [first] = await lease(client, "work")
    assert (await settle(client, first, "nack", delay_seconds=3600)).status_code == 204
    assert await lease(client, "work") == []
    row = await db.fetchrow(
        "SELECT status, run_at > now() + interval '3500 seconds' AS later FROM tasks"
        " WHERE id = $1::uuid",
        message_id,
    )
    assert (row["status"], row["later"]) == ("pending", True)


async def test_a_passed_deadline_hands_the_message_to_another_consumer(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await create_queue(client, "work")
    await put(client, "work", "x")
    [slow] = await lease(client, "work", visibility_seconds=0.2, consumer="slow")
    assert await lease(client, "work") == []  # held until its deadline

    await expire_and_recover(db, resources, slow["id"])
    [fast] = await lease(client, "work", consumer="fast")
    assert fast["id"] == slow["id"] and fast["delivery_attempts"] == 2

    late = await settle(client, slow)
    assert late.status_code == 409 and late.json()["detail"]
    assert (await settle(client, fast)).status_code == 204
    assert await status_of(db, fast["id"]) == "completed"


async def test_extend_keeps_the_message_from_coming_back(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await create_queue(client, "work")
    await put(client, "work", "x")
    [held] = await lease(client, "work", visibility_seconds=1)
    first_deadline = await db.fetchval(
        "SELECT lease_expires_at FROM tasks WHERE id = $1::uuid", held["id"]
    )

    extended = await settle(client, held, "extend", visibility_seconds=60)
    assert extended.status_code == 200, extended.text
    assert extended.json()["lease_expires_at"] > held["lease_expires_at"]

    async def first_deadline_passed() -> bool:
        return bool(await db.fetchval("SELECT now() > $1::timestamptz", first_deadline))

    await wait_for(first_deadline_passed, what="the first deadline to pass")
    await maintenance.reconcile_once(resources.engine, resources)
    assert await lease(client, "work") == []
    assert (await settle(client, held)).status_code == 204


async def test_extend_after_the_deadline_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await create_queue(client, "work")
    await put(client, "work", "x")
    [held] = await lease(client, "work", visibility_seconds=0.2)
    await expire_and_recover(db, resources, held["id"])
    late = await settle(client, held, "extend", visibility_seconds=60)
    assert late.status_code == 409 and late.json()["detail"]


async def test_a_waiting_lease_returns_when_a_message_arrives(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    await create_queue(client, "work")
    wait_s = 15
    started = time.monotonic()
    waiting = asyncio.create_task(lease(client, "work", wait_seconds=wait_s))

    await wait_for(lambda: blocked(resources), what="the lease to block on the doorbell")
    await put(client, "work", "wake up")
    [message] = await asyncio.wait_for(waiting, wait_s)
    assert message["data"] == "wake up"
    assert time.monotonic() - started < wait_s  # it answered before its wait ran out


async def test_a_waiting_lease_returns_empty_at_its_wait(client: httpx.AsyncClient) -> None:
    await create_queue(client, "work")
    started = time.monotonic()
    assert await lease(client, "work", wait_seconds=0.5) == []
    assert time.monotonic() - started >= 0.5


async def test_a_lease_takes_at_most_max_messages_in_order(client: httpx.AsyncClient) -> None:
    await create_queue(client, "work")
    ids = await put(client, "work", *range(5))
    first = await lease(client, "work", max_messages=3)
    rest = await lease(client, "work", max_messages=10)
    assert [m["id"] for m in first + rest] == ids
    assert [m["data"] for m in first] == [0, 1, 2]


async def test_lease_refuses_bad_input_and_unknown_queues(client: httpx.AsyncClient) -> None:
    await create_queue(client, "work")
    for body in (
        {"max_messages": 0},
        {"max_messages": 101},
        {"wait_seconds": 21},
        {"visibility_seconds": 0},
        {"consumer": "has space"},
        {"unknown": 1},
    ):
        response = await client.post("/queues/work/lease", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"]
    missing = await client.post("/queues/nope/lease", json={})
    assert missing.status_code == 404 and missing.json()["detail"]


async def test_a_waiting_lease_whose_client_hangs_up_takes_nothing(
    settings: Settings, resources: Resources, db: asyncpg.Connection
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await create_queue(http, "work")
            hang_up = asyncio.Event()
            waiting = asyncio.create_task(
                app(lease_scope("/queues/work/lease"), hanging_up(hang_up), ignore)
            )
            await wait_for(lambda: blocked(resources), what="the lease to block on the doorbell")
            hang_up.set()
            await asyncio.wait_for(waiting, 10)  # it stopped waiting when the client left
            await put(http, "work", "for the living")
            [message] = await lease(http, "work")
    assert message["data"] == "for the living" and message["delivery_attempts"] == 1


def lease_scope(path: str) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000), "server": ("test", 80),
    }  # fmt: skip


def hanging_up(event: asyncio.Event) -> Callable[[], Awaitable[dict]]:
    """An ASGI receive: a lease that waits 15 s, then the client gone when `event` is set."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b'{"wait_seconds": 15}', "more_body": False}
        await event.wait()
        return {"type": "http.disconnect"}

    return receive


async def ignore(message: dict) -> None:
    return None
