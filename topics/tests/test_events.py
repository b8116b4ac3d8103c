"""Messages announce their state changes on the task event stream, as tasks do:
publish and put `created`, a lease `started`, an ack `completed`, a nack
`retried`, `dead_lettered` or `failed`, a redrive `redriven`; one stream entry
per request, and the publishing key's owner on every event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from app.lifespan import Resources, close_resources, open_resources
from auth.tests.conftest import Keys, bearer, keys_settings
from tasks import events
from tasks.tests.fixtures import Stores
from topics.tests.conftest import create_queue, create_topic, expire_and_recover, lease, put
from topics.tests.conftest import settle as settle_message

SpawnApi = Callable[..., Awaitable[str]]


async def stream(resources: Resources) -> list[list[events.Event]]:
    """Every entry of the event stream, as its events."""
    entries = await resources.redis.xrange(resources.keys.events)
    return [events.decode(entry_id, fields) for entry_id, fields in entries]


async def entries_of(resources: Resources, before: int) -> list[list[events.Event]]:
    """The entries added since the stream held `before` of them."""
    return (await stream(resources))[before:]


def names(entry: list[events.Event]) -> list[tuple[str, str, str, int]]:
    return [(str(e.task_id), e.event, e.queue, e.attempt) for e in entry]


async def settle(
    client: httpx.AsyncClient, message: dict[str, Any], verb: str = "ack", **fields: Any
) -> None:
    assert (await settle_message(client, message, verb, **fields)).status_code == 204


async def test_each_request_announces_its_changes_in_one_entry(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    await create_topic(client, "orders")
    await create_queue(client, "dead")
    await create_queue(client, "work", topic_id="orders", message_max_deliveries=2,
                       dead_queue_id="dead")  # fmt: skip
    await create_queue(client, "audit", topic_id="orders")
    published = await client.post(
        "/topics/orders/messages", json={"messages": [{"data": 1}, {"data": 2}]}
    )
    assert published.status_code == 201
    copies = {(m["queue"], m["index"]): m["id"] for m in published.json()["messages"]}
    [created] = await stream(resources)  # four copies, one entry
    assert sorted(names(created)) == sorted((i, "created", q, 0) for (q, _), i in copies.items())
    assert {(e.kind, e.status, e.owner) for e in created} == {("message", "pending", None)}

    first, second = copies[("work", 0)], copies[("work", 1)]
    leased = await lease(client, "work", max_messages=2, consumer="billing-1")
    by_id = {message["id"]: message for message in leased}
    await settle(client, by_id[first])
    await settle(client, by_id[second], "nack")
    [again] = await lease(client, "work")
    await settle(client, again, "nack")  # its second and last delivery: to the dead queue
    redriven = await client.post("/queues/work/redrive")
    assert redriven.json() == {"redriven": 1}

    started, acked, nacked, started_again, dead, back = await entries_of(resources, 1)
    assert sorted(names(started)) == sorted([(first, "started", "work", 1),
                                             (second, "started", "work", 1)])  # fmt: skip
    assert {e.status for e in started} == {"processing"}
    assert names(acked) == [(first, "completed", "work", 1)]
    assert names(nacked) == [(second, "retried", "work", 1)]
    assert names(started_again) == [(second, "started", "work", 2)]
    assert names(dead) == [(second, "dead_lettered", "dead", 0)]
    assert dead[0].status == "pending"
    assert names(back) == [(second, "redriven", "work", 0)]


async def test_a_nack_without_a_dead_queue_fails_it_and_a_put_is_created(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    await create_queue(client, "once", message_max_deliveries=1)
    [message_id] = await put(client, "once", "x")
    [message] = await lease(client, "once")
    await settle(client, message, "nack", delay_seconds=30)
    created, started, failed = await stream(resources)
    assert names(created) == [(message_id, "created", "once", 0)]
    assert names(started) == [(message_id, "started", "once", 1)]
    assert names(failed) == [(message_id, "failed", "once", 1)]
    assert failed[0].status == "failed"


async def test_an_empty_lease_announces_nothing(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    await create_queue(client, "quiet")
    assert await lease(client, "quiet", wait_seconds=0.1) == []
    assert await stream(resources) == []


async def test_an_expired_lease_is_announced_as_a_nack_is(
    client: httpx.AsyncClient, resources: Resources, db: asyncpg.Connection
) -> None:
    """The reconcile's lease recovery: `retried`, then `dead_lettered` at the last."""
    await create_queue(client, "dead")
    await create_queue(client, "work", message_max_deliveries=2, dead_queue_id="dead")
    [message_id] = await put(client, "work", "x")
    for _ in range(2):
        [held] = await lease(client, "work", visibility_seconds=0.2)
        await expire_and_recover(db, resources, held["id"])
    found = [(e.event, e.queue, e.attempt) for entry in await stream(resources) for e in entry]
    assert found == [
        ("created", "work", 0), ("started", "work", 1), ("retried", "work", 1),
        ("started", "work", 2), ("dead_lettered", "dead", 0),
    ]  # fmt: skip
    assert {str(e.task_id) for entry in await stream(resources) for e in entry} == {message_id}


async def test_a_tenant_follows_its_own_messages_on_get_events(
    spawn_api: SpawnApi, database_url: str, stores: Stores, namespace: str
) -> None:
    settings = keys_settings(database_url, stores, namespace)
    assert settings.auth_pepper is not None
    resources = open_resources(settings)
    try:
        keys = Keys(resources)
        admin = bearer(await keys.token("ops", "admin"))
        mine = bearer(await keys.token("a", "tasks:write", "tasks:read", "consume"))
        theirs = bearer(await keys.token("b", "tasks:write"))
    finally:
        await close_resources(resources)
    url = await spawn_api(AUTH="keys", AUTH_PEPPER=settings.auth_pepper.get_secret_value())
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert (await http.post("/queues", json={"id": "work"}, headers=admin)).status_code == 201
        async with http.stream("GET", "/events", headers=mine) as sse:
            assert sse.status_code == 200
            for headers in (theirs, mine):  # b's message first, then a's
                answer = await http.post("/queues/work/messages", json={"data": 1}, headers=headers)
                assert answer.status_code == 201, answer.text
            own = answer.json()["messages"][0]["id"]
            task = await http.get(f"/tasks/{own}", headers=mine)
            assert task.status_code == 200 and task.json()["owner"] == "a"
            leased = await http.post("/queues/work/lease", json={"max_messages": 10}, headers=mine)
            for message in leased.json()["messages"]:
                receipt = {"receipt_handle": message["receipt_handle"]}
                acked = await http.post(
                    f"/messages/{message['id']}/ack", json=receipt, headers=mine
                )
                assert acked.status_code == 204
            seen = await _until_completed(sse, own)
    assert [(e["event"], e["owner"], e["kind"]) for e in seen] == [
        ("created", "a", "message"), ("started", "a", "message"), ("completed", "a", "message"),
    ]  # fmt: skip


async def _until_completed(sse: httpx.Response, task_id: str) -> list[dict[str, Any]]:
    """The events the stream sends until `task_id` completes."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        async for line in sse.aiter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if seen[-1]["task_id"] == task_id and seen[-1]["event"] == "completed":
                    return seen
    raise AssertionError(f"the stream ended after {seen}")
