"""The task event log: what each writer announces, and GET /events (SSE) on a real
API process: filters, Last-Event-ID resume, a slow consumer dropped, Redis lost."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import psutil
from redis.asyncio import RedisCluster

from app.embedded import EmbeddedValkey
from app.lifespan import Resources
from tasks import events
from tasks.event_schemas import EventOut
from tasks.feed import BLOCK_MS, EventFeed
from tasks.tests.fixtures import WorkerFactory, wait_for, wait_status
from tasks.waiters import Waiters

SpawnApi = Callable[..., Awaitable[str]]


async def stream_events(resources: Resources) -> dict[str, list[str]]:
    """Every event in the stream, as the names of each task's events in order."""
    found: dict[str, list[str]] = {}
    for entry_id, fields in await resources.redis.xrange(resources.keys.events):
        for event in events.decode(entry_id, fields):
            found.setdefault(str(event.task_id), []).append(event.event)
    return found


async def post(http: httpx.AsyncClient, **body: Any) -> str:
    response = await http.post("/tasks", json={"message": "events", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_every_state_change_is_announced_after_its_commit(
    client: httpx.AsyncClient,
    start_worker: WorkerFactory,
    resources: Resources,
    db: asyncpg.Connection,
) -> None:
    expiring = await post(client, ttl_seconds=0.2)
    expires_at = await db.fetchval("SELECT expires_at FROM tasks WHERE id = $1::uuid", expiring)

    async def past_expiry() -> bool:
        return bool(await db.fetchval("SELECT now() > $1", expires_at))

    await wait_for(past_expiry, what="the ttl to pass")
    await start_worker()
    done = await post(client)
    failing = await post(client, kind="boom", max_attempts=2)
    later = await post(client, delay_seconds=60)
    assert (await client.patch(f"/tasks/{later}", json={"status": "canceled"})).status_code == 200
    await wait_status(db, [done], "completed")
    await wait_status(db, [failing], "failed")
    await wait_status(db, [expiring], "expired")
    assert (await client.post(f"/tasks/{failing}/retry")).status_code == 200

    async def announced() -> bool:
        found = await stream_events(resources)
        return "redriven" in found.get(failing, []) and len(found.get(done, [])) == 3

    await wait_for(announced, what="every event in the stream")
    found = await stream_events(resources)
    assert found[done] == ["created", "started", "completed"]
    assert found[failing][:5] == ["created", "started", "retried", "started", "failed"]
    assert found[failing][5:6] == ["redriven"]  # then it runs again
    assert found[later] == ["created", "canceled"]
    assert found[expiring] == ["created", "expired"]  # refused by the claim, ended at once


# Server-Sent Events --------------------------------------------------------------


@asynccontextmanager
async def sse(
    url: str, headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """GET /events on a real server: its events as dicts (`event`, `id`, `data`)."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        http.stream("GET", "/events", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield _parse(response.aiter_lines())


async def _parse(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    current: dict[str, Any] = {}
    async for line in lines:
        if line == "":
            if "data" in current:
                current["data"] = json.loads(current["data"])
                current.setdefault("event", "message")
                yield current
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value


async def take(stream: AsyncIterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        return [await anext(stream) for _ in range(count)]


async def test_sse_filters_and_resumes_after_last_event_id(
    spawn_api: SpawnApi, start_worker: WorkerFactory
) -> None:
    url = await spawn_api()
    await start_worker(worker_queues="default,other")
    async with (
        sse(url, queue="other") as other_queue,
        sse(url, status="completed", kind="echo") as echo_done,
        httpx.AsyncClient(base_url=url) as http,
    ):
        first = await post(http)
        second = await post(http, queue="other")
        third = await post(http, queue="other", kind="sleep", payload={"seconds": 0})
        seen = await take(other_queue, 6)
        assert {e["data"]["queue"] for e in seen} == {"other"}
        by_task = {task: [e["data"]["event"] for e in seen if e["data"]["task_id"] == task]
                   for task in (second, third)}  # fmt: skip
        assert by_task == {task: ["created", "started", "completed"] for task in by_task}
        completed = await take(echo_done, 2)
        assert {e["data"]["task_id"] for e in completed} == {first, second}
        assert {e["data"]["status"] for e in completed} == {"completed"}

    replayed = await _after(url, third, seen)
    assert [e["data"]["event"] for e in replayed] == ["started", "completed"]


async def _after(url: str, task_id: str, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resume after the task's `created` event: the rest comes from the stream."""
    mine = [e for e in seen if e["data"]["task_id"] == task_id]
    headers = {"Last-Event-ID": mine[0]["id"]}
    async with sse(url, headers=headers, task_id=task_id) as resumed:
        found = await take(resumed, 2)
    assert [e["id"] for e in found] == [e["id"] for e in mine[1:]]
    return found


async def test_a_slow_consumer_is_dropped_with_a_final_event_and_a_quiet_one_hears_keep_alives(
    spawn_api: SpawnApi, resources: Resources
) -> None:
    url = await spawn_api(EVENTS_SUBSCRIBER_QUEUE="5", EVENTS_HEARTBEAT_SECONDS="0.2")
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        http.stream("GET", "/events") as quiet,
    ):
        async with asyncio.timeout(20):  # a quiet stream still hears a keep-alive
            assert ": keep-alive" in [line async for line in _lines_until_comment(quiet)]
    burst = [
        events.Event(uuid.uuid4(), "created", "pending", "default", "echo", None, 0)
        for _ in range(50)
    ]
    async with sse(url) as stream:
        await events.publish(resources, burst)
        found = [event async for event in _until_end(stream)]
    assert found[-1]["event"] == "dropped" and found[-1]["data"]["detail"]
    assert len(found) <= 6


async def _lines_until_comment(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        yield line
        if line.startswith(":"):
            return


async def _until_end(stream: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async with asyncio.timeout(20):
        async for event in stream:
            yield event


async def test_losing_redis_ends_the_stream_cleanly_and_refuses_new_ones(
    spawn_api: SpawnApi, valkey: EmbeddedValkey
) -> None:
    url = await spawn_api(REDIS_URL=valkey.url())
    async with sse(url) as stream:
        await asyncio.to_thread(valkey.kill)
        found = [event async for event in _until_end(stream)]
    assert [e["event"] for e in found] == ["unavailable"]
    async with httpx.AsyncClient(base_url=url) as http:
        started = time.monotonic()
        refused = await http.get("/events")
        assert refused.status_code == 503 and refused.json()["detail"]
        assert time.monotonic() - started < 30
        bad = await http.get("/events", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422


async def test_the_feed_reads_longer_than_it_blocks(resources: Resources) -> None:
    """A read timeout shorter than the blocking XREAD would cut every quiet read
    and take it for a lost Redis (ending every stream, waking every waiter)."""
    feed = EventFeed(resources, Waiters(resources))
    client = feed._client()
    try:
        if isinstance(client, RedisCluster):  # TEST_REDIS_CLUSTER=true: per node
            timeout_s = client.nodes_manager.connection_kwargs["socket_timeout"]
        else:
            timeout_s = client.connection_pool.connection_kwargs["socket_timeout"]
        assert timeout_s is not None and timeout_s > BLOCK_MS / 1000
    finally:
        await client.aclose()


async def test_a_stopping_api_ends_streams_and_waits_at_once(
    spawn_api: SpawnApi, client: httpx.AsyncClient
) -> None:
    """uvicorn waits for open requests before it stops: a stream or a 60 s wait
    must not hold the shutdown up."""
    url = await spawn_api()
    process = spawn_api.processes[-1]  # type: ignore[attr-defined]
    task_id = await post(client, delay_seconds=300)
    async with sse(url) as stream, httpx.AsyncClient(base_url=url, timeout=90) as http:
        waiting = asyncio.create_task(http.get(f"/tasks/{task_id}", params={"wait": 60}))
        api = psutil.Process(process.pid)

        port = int(url.rsplit(":", 1)[1])

        async def both_connected() -> bool:  # the stream's and the GET's connections
            served = [c for c in api.net_connections() if c.laddr and c.laddr.port == port]
            return len([c for c in served if c.status == "ESTABLISHED"]) >= 2

        await wait_for(both_connected, what="the GET to reach the API")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        found = [event async for event in _until_end(stream)]
        answer = await waiting
        await asyncio.to_thread(process.wait, 30)
    assert [e["event"] for e in found] == ["unavailable"]
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    assert time.monotonic() - started < 60, "the shutdown waited for the requests"


async def test_a_resume_from_beyond_the_trimmed_stream_says_so(
    spawn_api: SpawnApi, resources: Resources
) -> None:
    short = dataclasses.replace(
        resources, settings=resources.settings.model_copy(update={"event_stream_max_entries": 100})
    )
    first = events.Event(uuid.uuid4(), "created", "pending", "default", "echo", None, 0)
    await events.publish(short, [first])
    oldest = (await resources.redis.xrange(resources.keys.events, count=1))[0][0]
    for _ in range(400):  # whole nodes of the stream get trimmed past about 100 entries
        await events.publish(short, [first])
    remaining = (await resources.redis.xrange(resources.keys.events, count=1))[0][0]
    assert remaining != oldest, "nothing was trimmed"
    url = await spawn_api()
    async with sse(url, headers={"Last-Event-ID": f"{oldest}:0"}) as resumed:
        found = await take(resumed, 2)
    assert found[0]["event"] == "gap" and found[0]["data"]["detail"]
    assert found[1]["event"] == "message"


async def test_max_seconds_ends_the_stream_with_a_timeout_event(
    spawn_api: SpawnApi, client: httpx.AsyncClient
) -> None:
    url = await spawn_api(EVENTS_HEARTBEAT_SECONDS="0.2")
    started = time.monotonic()
    async with sse(url, max_seconds="3") as stream:
        task_id = await post(client)
        found = [event async for event in _until_end(stream)]
    elapsed_s = time.monotonic() - started
    assert [e["event"] for e in found] == ["message", "timeout"]
    assert found[-1]["data"]["detail"] and "id" not in found[-1]
    assert found[0]["data"]["task_id"] == task_id
    assert 3 <= elapsed_s < 20
    async with httpx.AsyncClient(base_url=url) as http:
        for bad in ("0", "-1", "86401", "soon"):
            refused = await http.get("/events", params={"max_seconds": bad})
            assert refused.status_code == 422, bad


async def test_the_events_sent_fit_the_schema_openapi_gives_them(
    spawn_api: SpawnApi, client: httpx.AsyncClient
) -> None:
    url = await spawn_api()
    task_id = await post(client)
    assert (await client.patch(f"/tasks/{task_id}", json={"status": "canceled"})).status_code == 200
    async with sse(url, headers={"Last-Event-ID": "0"}, task_id=task_id, max_seconds="1") as stream:
        found = [event async for event in _until_end(stream)]
    # From the start of the stream: it cannot tell that nothing was trimmed.
    assert [e["event"] for e in found] == ["gap", "message", "message", "timeout"]
    for event in found[1:3]:
        checked = EventOut.model_validate(event["data"])
        assert checked.id == event["id"] and str(checked.task_id) == task_id
    assert [e["data"]["event"] for e in found[1:3]] == ["created", "canceled"]
    schema = (await client.get("/openapi.json")).json()["paths"]["/events"]["get"]
    stream_schema = schema["responses"]["200"]["content"]["text/event-stream"]["schema"]
    [state_change, control] = stream_schema["oneOf"]
    assert state_change["properties"]["data"]["contentSchema"]["required"] == list(
        EventOut.model_fields
    )
    assert set(control["properties"]["event"]["enum"]) == {
        "gap",
        "dropped",
        "unavailable",
        "timeout",
    }
