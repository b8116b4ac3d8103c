"""Dead letters, redrive and retention."""

from __future__ import annotations

import asyncpg
import httpx

from app.lifespan import Resources
from tasks.worker import maintenance
from topics.tests.conftest import create_queue, expire_and_recover, lease, put, settle, wait_for


async def where(db: asyncpg.Connection, message_id: str) -> tuple[str, str, str | None]:
    row = await db.fetchrow(
        "SELECT queue, status, dead_from FROM tasks WHERE id = $1::uuid", message_id
    )
    return row["queue"], row["status"], row["dead_from"]


async def nack_until_dead(client: httpx.AsyncClient, queue: str, deliveries: int) -> None:
    for attempt in range(1, deliveries + 1):
        [message] = await lease(client, queue)
        assert message["delivery_attempts"] == attempt
        assert (await settle(client, message, "nack")).status_code == 204


async def test_after_max_deliveries_a_message_is_in_the_dead_queue_once(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_queue(client, "dead")
    await create_queue(client, "work", message_max_deliveries=3, dead_queue_id="dead")
    [message_id] = await put(client, "work", {"poison": True})

    await nack_until_dead(client, "work", 3)
    assert await where(db, message_id) == ("dead", "pending", "work")
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1
    assert await lease(client, "work") == []
    stats = (await client.get("/queues/work/stats")).json()
    assert stats["num_dead_messages"] == 1 and stats["num_undelivered_messages"] == 0

    [dead] = await lease(client, "dead")  # a dead queue is a queue: it can be consumed
    assert dead["id"] == message_id and dead["data"] == {"poison": True}
    assert dead["delivery_attempts"] == 1
    assert (await settle(client, dead, "nack")).status_code == 204
    assert await where(db, message_id) == ("dead", "pending", "work")

    redriven = await client.post("/queues/work/redrive", json={})
    assert redriven.status_code == 200 and redriven.json() == {"redriven": 1}
    assert await where(db, message_id) == ("work", "pending", None)
    [back] = await lease(client, "work")
    assert back["id"] == message_id and back["delivery_attempts"] == 1
    assert (await settle(client, back)).status_code == 204
    assert (await client.post("/queues/work/redrive")).json() == {"redriven": 0}


async def test_a_last_deadline_passing_dead_letters_it_too(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await create_queue(client, "dead")
    await create_queue(client, "work", message_max_deliveries=1, dead_queue_id="dead")
    [message_id] = await put(client, "work", "slow")
    [held] = await lease(client, "work", visibility_seconds=0.2)

    await expire_and_recover(db, resources, held["id"])
    assert await where(db, message_id) == ("dead", "pending", "work")
    [dead] = await lease(client, "dead")  # rung in the dead queue by the reconcile
    assert dead["id"] == message_id
    assert (await settle(client, held)).status_code == 409


async def test_without_a_dead_queue_it_ends_failed_and_redrive_brings_it_back(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_queue(client, "work", message_max_deliveries=2)
    ids = await put(client, "work", 1, 2, 3)
    for _ in range(2):
        messages = await lease(client, "work", max_messages=10)
        assert len(messages) == 3
        for message in messages:
            assert (await settle(client, message, "nack")).status_code == 204
    statuses = {await where(db, message_id) for message_id in ids}
    assert statuses == {("work", "failed", None)}
    assert (await client.get("/queues/work/stats")).json()["num_dead_messages"] == 3

    first = await client.post("/queues/work/redrive", json={"max_messages": 2})
    assert first.json() == {"redriven": 2}
    assert (await client.post("/queues/work/redrive")).json() == {"redriven": 1}
    again = await lease(client, "work", max_messages=10)
    assert sorted(m["id"] for m in again) == sorted(ids)
    assert {m["delivery_attempts"] for m in again} == {1}


async def test_a_dead_queue_that_goes_away_leaves_messages_to_fail(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_queue(client, "dead")
    await create_queue(client, "work", message_max_deliveries=1, dead_queue_id="dead")
    [message_id] = await put(client, "work", 1)
    assert (await client.delete("/queues/dead")).status_code == 204
    await nack_until_dead(client, "work", 1)
    assert await where(db, message_id) == ("work", "failed", None)


async def test_messages_past_their_retention_expire_in_the_sweep(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await create_queue(client, "brief", message_retention_seconds=1)
    [message_id] = await put(client, "brief", "soon gone")

    async def past_retention() -> bool:
        return bool(
            await db.fetchval(
                "SELECT expires_at < now() FROM tasks WHERE id = $1::uuid", message_id
            )
        )

    await wait_for(past_retention, what="the retention to pass")
    assert await lease(client, "brief") == []  # the claim refuses it already
    await maintenance.reconcile_once(resources.engine, resources)
    assert await db.fetchval("SELECT status FROM tasks WHERE id = $1::uuid", message_id) == (
        "expired"
    )
    assert (await client.post("/queues/nope/redrive")).status_code == 404
