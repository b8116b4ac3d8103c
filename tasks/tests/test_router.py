"""The tasks API over HTTP: every route and its errors, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.lifespan import Resources
from tasks.tests.fixtures import (
    Stores,
    WorkerFactory,
    app_client,
    free_port,
    make_settings,
    wait_for,
    wait_handler_started,
)

KNOWN_KINDS = ("blocking", "boom", "echo", "not_json", "record", "sleep")
MIB = 1024 * 1024


async def rows(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM tasks"))


async def rung(resources: Resources, settings: Settings) -> list[str]:
    return list(await resources.redis.zrange(resources.keys.ready("default"), 0, -1))


Check = Callable[[], Awaitable[None]]


@pytest.fixture
def nothing_written(db: asyncpg.Connection, resources: Resources, settings: Settings) -> Check:
    """No row in PostgreSQL and no id on the doorbell."""

    async def check() -> None:
        assert await rows(db) == 0
        assert await rung(resources, settings) == []

    return check


async def create(client: httpx.AsyncClient, message: str = "Hello World", **extra: Any) -> dict:
    response = await client.post("/tasks", json={"message": message, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def wait_status(client: httpx.AsyncClient, task_id: str, status: str) -> None:
    async def reached() -> bool:
        return (await client.get(f"/tasks/{task_id}")).json()["status"] == status

    await wait_for(reached, timeout_s=20, what=f"task {task_id} to be {status}")


async def list_page(client: httpx.AsyncClient, **params: Any) -> dict:
    params = {name: value for name, value in params.items() if value is not None}
    response = await client.get("/tasks", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def cancel(client: httpx.AsyncClient, task_id: Any) -> Awaitable[httpx.Response]:
    return client.patch(f"/tasks/{task_id}", json={"status": "canceled"})


async def stored_status(db: asyncpg.Connection, task_id: str) -> str:
    return str(await db.fetchval("SELECT status FROM tasks WHERE id = $1", uuid.UUID(task_id)))


async def executions(db: asyncpg.Connection, task_id: str) -> int:
    query = "SELECT count(*) FROM executions WHERE task_id = $1"
    return int(await db.fetchval(query, uuid.UUID(task_id)))


def assert_json_error(response: httpx.Response, status: int) -> str:
    """The one error shape: a sentence in `detail` (and `errors` for a schema problem)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail, response.text
    return detail


# Create ---------------------------------------------------------------------


async def test_create_stores_the_task_and_rings_the_doorbell(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources, settings: Settings
) -> None:
    response = await client.post("/tasks", json={"message": "Hello World"})
    assert response.status_code == 201, response.text
    body = response.json()
    task_id = uuid.UUID(body["id"])
    assert (task_id.version, task_id.variant) == (7, uuid.RFC_4122)
    assert {k: body[k] for k in body if not k.endswith("_at") and k != "id"} == {
        "message": "Hello World",
        "kind": "echo",
        "payload": {},
        "status": "pending",
        "result": None,
        "error": None,
        "errors": [],
        "attempts": 0,
        "max_attempts": 3,
        "redrives": 0,
        "timeout_seconds": 300.0,
        "worker_id": None,
        "cancel_requested": False,
        "queue": "default",
        "priority": 5,
        "fair_level": 0,
        "owner": None,
        "workflow_id": None,
    }
    for field in ("created_at", "updated_at"):
        assert datetime.fromisoformat(body[field]).utcoffset() is not None, body[field]
    assert (body["started_at"], body["finished_at"]) == (None, None)
    assert response.headers["location"] == f"/tasks/{task_id}"

    row = await db.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
    assert row is not None
    assert (row["message"], row["kind"], row["status"]) == ("Hello World", "echo", "pending")
    assert json.loads(row["payload"]) == {}
    assert await rung(resources, settings) == [str(task_id)]
    assert (await client.get(response.headers["location"])).json() == body


@pytest.mark.parametrize(
    ("kind", "payload"),
    [("sleep", {"seconds": 2}), ("sleep", {"seconds": 3600}), ("record", {"fail": True})],
)
async def test_create_accepts_kind_and_payload(
    client: httpx.AsyncClient, db: asyncpg.Connection, kind: str, payload: dict
) -> None:
    body = await create(client, "nap", kind=kind, payload=payload)
    assert (body["kind"], body["payload"]) == (kind, payload)
    row = await db.fetchrow("SELECT kind, payload FROM tasks WHERE id = $1", uuid.UUID(body["id"]))
    assert (row["kind"], json.loads(row["payload"])) == (kind, payload)


async def test_create_unknown_kind_names_the_known_ones(
    client: httpx.AsyncClient, nothing_written: Check
) -> None:
    response = await client.post("/tasks", json={"message": "x", "kind": "nope"})
    detail = assert_json_error(response, 422)
    assert all(kind in detail for kind in ("nope", *KNOWN_KINDS)), detail
    await nothing_written()


@pytest.mark.parametrize(
    "payload",
    [{"seconds": -1}, {"seconds": 3600.5}, {"seconds": 1, "extra": 2}, {}, {"seconds": "soon"}],
)
async def test_create_sleep_with_invalid_payload_is_refused(
    client: httpx.AsyncClient, nothing_written: Check, payload: dict
) -> None:
    body = {"message": "x", "kind": "sleep", "payload": payload}
    response = await client.post("/tasks", json=body)
    assert "payload" in assert_json_error(response, 422)
    await nothing_written()


JSON = {"content-type": "application/json"}


def _raw(value: Any) -> bytes:
    return json.dumps(value).encode()


BAD_BODIES = {
    "malformed json": b'{"message": "Hello',
    "not an object": _raw(["Hello"]),
    "message as number": _raw({"message": 42}),
    "message null": _raw({"message": None}),
    "payload as list": _raw({"message": "x", "payload": [1, 2]}),
    "payload as string": _raw({"message": "x", "payload": "seconds=1"}),
    "missing message": _raw({"kind": "echo"}),
    "empty message": _raw({"message": ""}),
    "whitespace message": _raw({"message": " \t\n "}),
    "message over 64 KiB": _raw({"message": "a" * (64 * 1024 + 1)}),
    "message over 64 KiB in UTF-8": _raw({"message": "é" * (32 * 1024 + 1)}),
    "payload over 256 KiB": _raw({"message": "x", "payload": {"blob": "x" * (256 * 1024)}}),
    "unknown field": _raw({"message": "x", "colour": "red"}),
    "kind not a name": _raw({"message": "x", "kind": "no spaces"}),
    "NUL in message": _raw({"message": "a\u0000b"}),
    "NUL in payload": _raw({"message": "x", "payload": {"k": "a\u0000b"}}),
    "NaN in payload": b'{"message": "x", "payload": {"n": NaN}}',
}


@pytest.mark.parametrize("content", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_create_refuses_bad_input_and_writes_nothing(
    client: httpx.AsyncClient, nothing_written: Check, content: bytes
) -> None:
    headers = {"content-type": "application/json"}
    response = await client.post("/tasks", content=content, headers=headers)
    assert assert_json_error(response, 422)
    await nothing_written()


async def test_create_size_limits(
    client: httpx.AsyncClient, db: asyncpg.Connection, nothing_written: Check
) -> None:
    big = _raw({"message": "x", "payload": {"blob": "x" * MIB}})
    response = await client.post("/tasks", content=big)
    assert "body" in assert_json_error(response, 413)
    # Exactly 1 MiB is still read and judged on its content.
    head = b'{"message": "x", "payload": {"blob": "'
    exact = head + b"x" * (MIB - len(head) - 3) + b'"}}'
    assert len(exact) == MIB
    response = await client.post("/tasks", content=exact, headers=JSON)
    assert_json_error(response, 422)
    assert ["body", "payload"] in [error["loc"] for error in response.json()["errors"]]
    await nothing_written()
    # A message of exactly 64 KiB is accepted.
    body = await create(client, "a" * (64 * 1024))
    stored = await db.fetchval("SELECT message FROM tasks WHERE id = $1", uuid.UUID(body["id"]))
    assert len(stored) == 64 * 1024


async def test_create_refuses_a_streamed_body_over_1_mib(
    client: httpx.AsyncClient, nothing_written: Check
) -> None:
    big = _raw({"message": "x", "payload": {"blob": "x" * MIB}})

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    response = await client.post("/tasks", content=chunks())
    assert "body" in assert_json_error(response, 413)
    await nothing_written()


# Read -----------------------------------------------------------------------


async def test_get_task(client: httpx.AsyncClient) -> None:
    created = await create(client, "find me", kind="record", payload={"seconds": 1})
    response = await client.get(f"/tasks/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    unknown = uuid.uuid4()
    assert str(unknown) in assert_json_error(await client.get(f"/tasks/{unknown}"), 404)
    assert str(unknown) in assert_json_error(await cancel(client, unknown), 404)
    assert assert_json_error(await client.get("/tasks/not-a-uuid"), 422)
    assert assert_json_error(await cancel(client, "12345"), 422)


async def test_list_walks_all_pages_newest_first(client: httpx.AsyncClient) -> None:
    created = [(await create(client, f"task {n}"))["id"] for n in range(7)]
    seen: list[str] = []
    sizes: list[int] = []
    page = {"next_cursor": ""}
    while page["next_cursor"] is not None:
        assert len(sizes) < 5, "pagination does not end"
        page = await list_page(client, limit=3, cursor=page["next_cursor"] or None)
        seen += [item["id"] for item in page["items"]]
        sizes.append(len(page["items"]))
    assert sizes == [3, 3, 1]
    assert seen == created[::-1]


async def test_list_default_limit_is_50(client: httpx.AsyncClient) -> None:
    assert await list_page(client) == {"items": [], "next_cursor": None}
    created = [(await create(client, f"task {n}"))["id"] for n in range(51)]
    page = await list_page(client)
    assert [item["id"] for item in page["items"]] == created[:0:-1]
    assert page["next_cursor"] is not None
    rest = await list_page(client, cursor=page["next_cursor"])
    assert ([item["id"] for item in rest["items"]], rest["next_cursor"]) == ([created[0]], None)
    assert len((await list_page(client, limit=500))["items"]) == 51


async def test_list_filters_by_status_and_kind(client: httpx.AsyncClient) -> None:
    echo = [(await create(client, f"echo {n}"))["id"] for n in range(3)]
    sleep = [(await create(client, "nap", kind="sleep", payload={"seconds": 1}))["id"]]
    sleep.append((await create(client, "nap", kind="sleep", payload={"seconds": 2}))["id"])
    for task_id in (echo[1], sleep[0]):
        assert (await cancel(client, task_id)).is_success

    async def ids(**params: Any) -> list[str]:
        return [item["id"] for item in (await list_page(client, **params))["items"]]

    assert await ids(status="canceled") == [sleep[0], echo[1]]
    assert await ids(status="pending") == [sleep[1], echo[2], echo[0]]
    assert await ids(kind="sleep") == sleep[::-1]
    assert await ids(kind="echo", status="pending") == [echo[2], echo[0]]
    assert await ids(status="completed") == []
    first = await list_page(client, kind="echo", limit=2)
    assert first["next_cursor"] is not None
    assert await ids(kind="echo", cursor=first["next_cursor"]) == [echo[0]]


BAD_QUERIES = ["limit=0", "limit=501", "limit=ten", "status=done", "kind=no%20spaces"]


@pytest.mark.parametrize("query", [*BAD_QUERIES, "cursor=garbage", f"cursor={'0' * 65}"])
async def test_list_refuses_bad_query(client: httpx.AsyncClient, query: str) -> None:
    assert assert_json_error(await client.get(f"/tasks?{query}"), 422)


# Cancel ---------------------------------------------------------------------


async def test_cancel_a_pending_task_is_idempotent(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    task_id = (await create(client))["id"]
    first = await cancel(client, task_id)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "canceled"
    assert datetime.fromisoformat(first.json()["finished_at"]).utcoffset() is not None
    again = await cancel(client, task_id)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await stored_status(db, task_id) == "canceled"


@pytest.mark.parametrize(
    "body",
    [{"status": "completed"}, {"status": "pending"}, {}, {"status": "canceled", "message": "x"}],
)
async def test_cancel_refuses_other_changes(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict
) -> None:
    task_id = (await create(client))["id"]
    assert assert_json_error(await client.patch(f"/tasks/{task_id}", json=body), 422)
    row = await db.fetchrow("SELECT status, message FROM tasks WHERE id = $1", uuid.UUID(task_id))
    assert (row["status"], row["message"]) == ("pending", "Hello World")


async def test_cancel_a_finished_task_conflicts(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    done = (await create(client, "fine"))["id"]
    failed = (await create(client, "bad", kind="boom"))["id"]
    await start_worker()
    for task_id, status in ((done, "completed"), (failed, "failed")):
        await wait_status(client, task_id, status)
        response = await cancel(client, task_id)
        assert status in assert_json_error(response, 409)
        assert await stored_status(db, task_id) == status


async def test_cancel_a_processing_task_is_accepted_and_cancels_the_handler(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    task_id = (await create(client, "busy", kind="record", payload={"seconds": 30}))["id"]
    await start_worker()
    await wait_handler_started(db, task_id)
    response = await cancel(client, task_id)
    assert response.status_code == 202, response.text
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("processing", True)
    again = await cancel(client, task_id)
    assert again.status_code in (200, 202), again.text

    await wait_status(client, task_id, "canceled")
    task = (await client.get(f"/tasks/{task_id}")).json()
    assert task["finished_at"] is not None and "canceled" in task["error"]
    # The handler started once and was stopped before it could finish.
    runs = await db.fetch(
        "SELECT finished_at FROM executions WHERE task_id = $1", uuid.UUID(task_id)
    )
    assert [run["finished_at"] for run in runs] == [None]
    assert (await cancel(client, task_id)).status_code == 200


async def test_retry_requeues_failed_and_canceled_tasks_only(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    failed = (await create(client, "bad", kind="boom", max_attempts=1))["id"]
    canceled = (await create(client, "stop"))["id"]
    pending = (await create(client, "wait"))["id"]
    assert (await cancel(client, canceled)).status_code == 200
    await start_worker()
    await wait_status(client, failed, "failed")

    assert "not found" in assert_json_error(await client.post(f"/tasks/{uuid.uuid4()}/retry"), 404)
    for task_id in (failed, canceled):
        response = await client.post(f"/tasks/{task_id}/retry")
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["attempts"]) == ("pending", 0)
    await wait_status(client, canceled, "completed")
    await wait_status(client, failed, "failed")
    task = (await client.get(f"/tasks/{failed}")).json()
    assert task["attempts"] == 1 and len(task["errors"]) == 2  # both runs' errors are kept
    # Attempts count from 1 again after a re-drive; the entries say which round they belong to.
    assert [(e["redrive"], e["attempt"]) for e in task["errors"]] == [(0, 1), (1, 1)]
    assert task["redrives"] == 1
    await wait_status(client, pending, "completed")
    response = await client.post(f"/tasks/{pending}/retry")
    assert "completed" in assert_json_error(response, 409)


async def test_a_canceled_task_never_runs(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    settings: Settings,
    start_worker: WorkerFactory,
) -> None:
    canceled = (await create(client, "never", kind="record"))["id"]
    response = await cancel(client, canceled)
    assert response.status_code == 200, response.text
    # Rung after the canceled one, so it is popped after it.
    later = (await create(client, "later", kind="record"))["id"]
    await start_worker()
    await wait_status(client, later, "completed")
    assert await executions(db, later) == 1
    assert await executions(db, canceled) == 0
    task = (await client.get(f"/tasks/{canceled}")).json()
    assert (task["status"], task["attempts"], task["started_at"]) == ("canceled", 0, None)
    assert await rung(resources, settings) == []


# Health and docs ------------------------------------------------------------


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await client.get("/ready")
    expected = {"status": "ready", "postgres": "ok", "redis": "ok"}
    assert (ready.status_code, ready.json()) == (200, expected)


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"]["title"] == "Taskline"
    paths = schema["paths"]
    assert set(paths["/tasks"]) >= {"get", "post"}
    assert set(paths["/tasks/{task_id}"]) >= {"get", "patch"}
    assert {"/health", "/ready"} <= set(paths)
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")


# Stores down ----------------------------------------------------------------


def assert_unavailable(response: httpx.Response, store: str) -> None:
    assert store in assert_json_error(response, 503)
    assert response.headers["retry-after"]


async def test_postgres_down_answers_503(
    namespace: str, stores: Stores, resources: Resources, settings: Settings
) -> None:
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    async with app_client(make_settings(down, stores.redis_url, namespace)) as http:
        assert_unavailable(await http.post("/tasks", json={"message": "x"}), "postgres")
        assert_unavailable(await http.get(f"/tasks/{uuid.uuid4()}"), "postgres")
        assert_unavailable(await http.get("/tasks"), "postgres")
        assert_unavailable(await cancel(http, uuid.uuid4()), "postgres")
        ready = await http.get("/ready")
        assert (ready.status_code, ready.json()["redis"]) == (503, "ok")
        assert ready.json()["postgres"].startswith("unavailable")
        assert (await http.get("/health")).status_code == 200
    assert await rung(resources, settings) == []


async def test_redis_down_answers_503_and_reads_still_work(
    client: httpx.AsyncClient, database_url: str, namespace: str, db: asyncpg.Connection
) -> None:
    existing = await create(client, "before the outage")
    down = f"redis://127.0.0.1:{free_port()}/0"
    async with app_client(make_settings(database_url, down, namespace)) as http:
        assert_unavailable(await http.post("/tasks", json={"message": "x"}), "redis")
        assert await rows(db) == 1
        assert (await http.get(f"/tasks/{existing['id']}")).json() == existing
        assert (await http.get(f"/tasks/{uuid.uuid4()}")).status_code == 404
        listed = await http.get("/tasks")
        assert (listed.status_code, listed.json()["items"]) == (200, [existing])
        ready = await http.get("/ready")
        assert (ready.status_code, ready.json()["postgres"]) == (503, "ok")
        assert ready.json()["redis"].startswith("unavailable")
        assert (await http.get("/health")).status_code == 200


# Idempotency ----------------------------------------------------------------


async def test_same_idempotency_key_and_body_return_the_first_task(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/tasks", json={"message": "pay"}, headers=headers)
    again = await client.post("/tasks", json={"message": "pay"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = await client.post("/tasks", json={"message": "refund"}, headers=headers)
    assert "different request body" in assert_json_error(other, 422)
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1


async def test_concurrent_duplicates_create_exactly_one_task(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headers = {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(
        *(client.post("/tasks", json={"message": "once"}, headers=headers) for _ in range(20))
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] * 19 + [201], codes
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1


async def test_an_idempotency_key_expires_after_a_day(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headers = {"Idempotency-Key": "daily"}
    first = await client.post("/tasks", json={"message": "a"}, headers=headers)
    await db.execute("UPDATE tasks SET created_at = now() - interval '25 hours'")
    second = await client.post("/tasks", json={"message": "b"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert second.json()["id"] != first.json()["id"]
    assert await db.fetchval("SELECT count(*) FROM tasks") == 2


@pytest.mark.parametrize("key", ["", "x" * 201, "has space", "tab\there"])
async def test_a_bad_idempotency_key_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection, key: str
) -> None:
    response = await client.post("/tasks", json={"message": "x"}, headers={"Idempotency-Key": key})
    assert_json_error(response, 422)
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


# Queues ---------------------------------------------------------------------


async def queues(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """GET /queues as {name: queue}, after checking its sums hold together."""
    response = await client.get("/queues")
    assert response.status_code == 200, response.text
    listed = response.json()["queues"]
    names = [queue["name"] for queue in listed]
    assert names == sorted(set(names)), names
    for queue in listed:
        levels = queue["priorities"]
        assert [level["priority"] for level in levels] == sorted({p["priority"] for p in levels})
        for counts in (queue, *levels):
            assert counts["pending"] == counts["ready"] + counts["scheduled"], queue
        for field in ("pending", "ready", "scheduled", "processing"):
            assert queue[field] == sum(level[field] for level in levels), (field, queue)
        assert (queue["oldest_ready_age_s"] is None) == (queue["ready"] == 0), queue
    return {queue["name"]: queue for queue in listed}


def level(priority: int, ready: int = 0, scheduled: int = 0, processing: int = 0) -> dict:
    pending = ready + scheduled
    return dict(
        priority=priority, pending=pending, ready=ready, scheduled=scheduled, processing=processing
    )


def counts_of(queue: dict[str, Any]) -> dict[str, Any]:
    """A queue's answer without its age, which depends on the clock."""
    return {name: value for name, value in queue.items() if name != "oldest_ready_age_s"}


def idle(name: str) -> dict[str, Any]:
    return dict(name=name, pending=0, ready=0, scheduled=0, processing=0, priorities=[])


async def set_processing(db: asyncpg.Connection, task_id: str) -> None:
    await db.execute(
        """UPDATE tasks SET status = 'processing', attempts = 1, started_at = now(),
                  worker_id = 'test', lease_expires_at = now() + interval '5 minutes'
            WHERE id = $1""",
        uuid.UUID(task_id),
    )


async def set_finished(db: asyncpg.Connection, task_id: str, status: str) -> None:
    query = "UPDATE tasks SET status = $2, finished_at = now() WHERE id = $1"
    await db.execute(query, uuid.UUID(task_id), status)


async def test_queues_lists_the_default_queue_when_there_are_no_tasks(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/queues")
    assert response.status_code == 200, response.text
    assert response.json() == {"queues": [{**idle("default"), "oldest_ready_age_s": None}]}


async def test_queues_count_active_tasks_per_queue_and_priority(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    async def make(queue: str | None, priority: int | None, **extra: Any) -> str:
        fields = {"queue": queue, "priority": priority, **extra}
        body = await create(client, **{k: v for k, v in fields.items() if v is not None})
        assert (body["queue"], body["priority"]) == (
            queue or "default",
            5 if priority is None else priority,
        )
        return str(body["id"])

    later = {"delay_seconds": 3600}
    # default: priority 5 (the default) 2 ready; priority 1: 1 ready, 1 scheduled.
    for _ in range(2):
        await make(None, None)
    await make("default", 1)
    await make("default", 1, **later)
    # emails: priority 0: 3 ready + 2 processing; priority 9: 2 scheduled.
    for _ in range(3):
        await make("emails", 0)
    for _ in range(2):
        await set_processing(db, await make("emails", 0))
    for _ in range(2):
        await make("emails", 9, **later)
    # Finished tasks never count, whatever the status or the queue.
    assert (await cancel(client, await make("default", 5))).status_code == 200
    await set_finished(db, await make("emails", 0), "completed")
    await set_finished(db, await make("emails", 9, **later), "failed")
    await set_finished(db, await make("reports", 3), "completed")
    await set_finished(db, await make("reports", 3), "expired")

    listed = await queues(client)
    assert list(listed) == ["default", "emails", "reports"]
    assert counts_of(listed["default"]) == {
        **idle("default"),
        **dict(pending=4, ready=3, scheduled=1),
        "priorities": [level(1, ready=1, scheduled=1), level(5, ready=2)],
    }
    assert counts_of(listed["emails"]) == {
        **idle("emails"),
        **dict(pending=5, ready=3, scheduled=2, processing=2),
        "priorities": [level(0, ready=3, processing=2), level(9, scheduled=2)],
    }
    # Every task of "reports" has finished: still listed (Redis knows it), all zero.
    assert listed["reports"] == {**idle("reports"), "oldest_ready_age_s": None}
    for name in ("default", "emails"):
        assert 0 <= listed[name]["oldest_ready_age_s"] < 10, listed[name]

    # A scheduled task whose time has come is ready, whether or not the doorbell knows.
    await db.execute(
        "UPDATE tasks SET run_at = now() - interval '1 second' WHERE queue = 'emails'"
        " AND priority = 9 AND status = 'pending'"
    )
    emails = (await queues(client))["emails"]
    assert (emails["ready"], emails["scheduled"], emails["pending"]) == (5, 0, 5)
    assert emails["priorities"][1] == level(9, ready=2)


async def test_queues_oldest_ready_age(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    async def age_of(name: str) -> float | None:
        return (await queues(client))[name]["oldest_ready_age_s"]  # type: ignore[no-any-return]

    async def backdate(task_id: str, seconds: int) -> None:
        query = "UPDATE tasks SET run_at = now() - make_interval(secs => $2) WHERE id = $1"
        await db.execute(query, uuid.UUID(task_id), seconds)

    scheduled = (await create(client, queue="ages", priority=2, delay_seconds=600))["id"]
    assert await age_of("ages") is None  # only scheduled: nothing has waited yet
    fresh = (await create(client, queue="ages", priority=2))["id"]
    assert 0 <= (await age_of("ages") or -1) < 10

    minute = (await create(client, queue="ages", priority=7))["id"]
    await backdate(minute, 60)
    first = await age_of("ages")
    assert first is not None and 60 <= first < 120, first
    await asyncio.sleep(0.3)
    second = await age_of("ages")
    assert second is not None and first + 0.2 <= second < 120, (first, second)

    # The queue's age is its oldest ready task's, over every priority.
    older = (await create(client, queue="ages", priority=0))["id"]
    await backdate(older, 90)
    assert 90 <= (await age_of("ages") or -1) < 120
    # A running task no longer waits, and a scheduled one has not started to.
    await set_processing(db, older)
    await backdate(scheduled, -3600)
    assert 60 <= (await age_of("ages") or -1) < 90
    # Another queue's wait is not this one's.
    assert (await queues(client))["default"]["oldest_ready_age_s"] is None
    for task_id in (minute, fresh):
        assert (await cancel(client, task_id)).status_code == 200
    assert await age_of("ages") is None
    listed = (await queues(client))["ages"]
    assert (listed["ready"], listed["scheduled"], listed["processing"]) == (0, 1, 1)


async def test_queues_follow_a_running_worker(
    client: httpx.AsyncClient, db: asyncpg.Connection, start_worker: WorkerFactory
) -> None:
    slow = (await create(client, "slow", kind="record", payload={"seconds": 1.5}, priority=3))["id"]
    await start_worker()
    await wait_status(client, slow, "processing")
    listed = await queues(client)
    assert counts_of(listed["default"]) == {
        **idle("default"),
        "processing": 1,
        "priorities": [level(3, processing=1)],
    }
    assert listed["default"]["oldest_ready_age_s"] is None
    await wait_status(client, slow, "completed")
    assert await queues(client) == {"default": {**idle("default"), "oldest_ready_age_s": None}}


async def test_queues_postgres_down_answers_503(namespace: str, stores: Stores) -> None:
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    async with app_client(make_settings(down, stores.redis_url, namespace)) as http:
        assert_unavailable(await http.get("/queues"), "postgres")


async def test_queues_redis_down_answers_503(
    client: httpx.AsyncClient, database_url: str, namespace: str
) -> None:
    await create(client, queue="emails")
    assert list(await queues(client)) == ["default", "emails"]
    down = f"redis://127.0.0.1:{free_port()}/0"
    async with app_client(make_settings(database_url, down, namespace)) as http:
        assert_unavailable(await http.get("/queues"), "redis")
