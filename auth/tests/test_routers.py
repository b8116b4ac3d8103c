"""Every router beyond /tasks and /queues against three callers: no key (401), a
key holding every scope but the one the route needs (403, nothing written) and
a key holding just that scope (2xx). Then the tenant rules of the task routes
that read or wait: another owner's task is not found, and not waited for."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from auth.tests.conftest import Keys, bearer
from tasks.tests.fixtures import WorkerFactory

SpawnApi = Callable[..., Awaitable[str]]

SCOPES = ("tasks:write", "tasks:read", "queues:read", "consume", "admin")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {task}, {message} are filled in from the fixture's objects
    scope: str
    body: dict[str, Any] | None = None
    ok: int = 200


ROUTES = {
    "run": Route("POST", "/run/echo?wait=10", "tasks:write", {"message": "hi"}),
    "wait": Route("GET", "/tasks/{task}?wait=0.01", "tasks:read"),
    "create-wait": Route("POST", "/tasks?wait=0.01", "tasks:write", {"message": "w"}, ok=202),
    "schedule-create": Route(
        "POST", "/schedules", "admin", {"id": "s2", "every_seconds": 60}, ok=201
    ),
    "schedule-list": Route("GET", "/schedules", "tasks:read"),
    "schedule-get": Route("GET", "/schedules/s1", "tasks:read"),
    "schedule-patch": Route("PATCH", "/schedules/s1", "admin", {"enabled": False}),
    "schedule-run": Route("POST", "/schedules/s1/run", "admin", ok=201),
    "schedule-delete": Route("DELETE", "/schedules/s1", "admin", ok=204),
    "workflow-create": Route("POST", "/workflows", "admin", {"steps": [{"message": "x"}]}, ok=201),
    "workflow-get": Route("GET", "/workflows/{workflow}", "tasks:read"),
    "workflow-cancel": Route("PATCH", "/workflows/{workflow}", "admin", {"status": "canceled"}),
    "topic-create": Route("POST", "/topics", "admin", {"id": "t3"}, ok=201),
    "topic-list": Route("GET", "/topics", "queues:read"),
    "topic-get": Route("GET", "/topics/t1", "queues:read"),
    "topic-delete": Route("DELETE", "/topics/t2", "admin", ok=204),
    "queue-create": Route("POST", "/queues", "admin", {"id": "q3"}, ok=201),
    "queue-get": Route("GET", "/queues/q1", "queues:read"),
    "queue-patch": Route("PATCH", "/queues/q1", "admin", {"ack_deadline_seconds": 30}),
    "queue-stats": Route("GET", "/queues/q1/stats", "queues:read"),
    "queue-delete": Route("DELETE", "/queues/q2", "admin", ok=204),
    "publish": Route("POST", "/topics/t1/messages", "tasks:write", {"data": 1}, ok=201),
    "put": Route("POST", "/queues/q1/messages", "tasks:write", {"data": 2}, ok=201),
    "lease": Route("POST", "/queues/q1/lease", "consume", {"wait_seconds": 0}),
    "redrive": Route("POST", "/queues/q1/redrive", "admin", {}),
    "ack": Route("POST", "/messages/{message}/ack", "consume", {"receipt": 1}, ok=204),
    "nack": Route("POST", "/messages/{message}/nack", "consume", {"receipt": 1}, ok=204),
    "extend": Route(
        "POST", "/messages/{message}/extend", "consume", {"receipt": 1, "visibility_seconds": 60}
    ),
    # A stream does not end: its 200 is seen on a real API process (last test).
    "events": Route("GET", "/events?task_id={task}", "tasks:read", ok=0),
}


async def snapshot(db: asyncpg.Connection) -> list[Any]:
    """What a refusal must leave alone: every task, schedule, workflow, topic and queue."""
    found = []
    for sql in (
        "SELECT id, owner, status, attempts, lease_expires_at FROM tasks ORDER BY id",
        "SELECT id, enabled, updated_at FROM schedules ORDER BY id",
        "SELECT id, status FROM workflows ORDER BY id",
        "SELECT id FROM topics ORDER BY id",
        "SELECT id, ack_deadline_seconds FROM queues ORDER BY id",
    ):
        found.append([tuple(row) for row in await db.fetch(sql)])
    return found


async def setup(client: httpx.AsyncClient, admin: dict[str, str], keys: Keys) -> dict[str, str]:
    """A schedule, a workflow, topic t1 with queue q1, a leased message, a task
    of owner "a"; and queue q2, topic t2 for the deletes."""

    async def call(method: str, path: str, body: Any = None, headers: Any = admin) -> Any:
        answer = await client.request(method, path, json=body, headers=headers)
        assert answer.status_code < 300, (path, answer.text)
        return answer.json() if answer.content else None

    await call("POST", "/schedules", {"id": "s1", "every_seconds": 3600})
    workflow = await call("POST", "/workflows", {"steps": [{"message": "w"}]})
    for body in ({"id": "t1"}, {"id": "t2"}):
        await call("POST", "/topics", body)
    await call("POST", "/queues", {"id": "q1", "topic_id": "t1"})
    await call("POST", "/queues", {"id": "q2"})
    await call("POST", "/topics/t1/messages", {"data": 0})
    leased = await call("POST", "/queues/q1/lease", {"wait_seconds": 0})
    task = await call(
        "POST", "/tasks", {"message": "mine"}, bearer(await keys.token("a", "tasks:write"))
    )
    message = leased["messages"][0]
    return {
        "workflow": workflow["id"], "task": task["id"],
        "message": message["id"], "receipt": message["receipt_handle"],
    }  # fmt: skip


def _request(route: Route, objects: dict[str, str]) -> tuple[str, Any]:
    body = route.body
    if body is not None and "receipt" in body:
        body = {**body, "receipt_handle": objects["receipt"]}
        del body["receipt"]
    return route.path.format(**objects), body


@pytest.mark.parametrize("name", list(ROUTES))
async def test_a_route_needs_its_scope_and_a_refusal_writes_nothing(
    client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection, name: str,
    start_worker: WorkerFactory,
) -> None:  # fmt: skip
    route = ROUTES[name]
    admin = bearer(await keys.token("ops", "admin"))
    objects = await setup(client, admin, keys)
    path, body = _request(route, objects)
    others = [scope for scope in SCOPES if scope not in (route.scope, "admin")]
    before = await snapshot(db)
    for headers, refused in (({}, 401), (bearer(await keys.token("a", *others)), 403)):
        answer = await client.request(route.method, path, json=body, headers=headers)
        assert answer.status_code == refused, (headers, answer.text)
        assert "detail" in answer.json()
        assert await snapshot(db) == before
    if route.ok == 0:
        return
    if name == "run":  # after the refusals: a worker changes rows of its own
        await start_worker()
    allowed = bearer(await keys.token("a", route.scope))
    answer = await client.request(route.method, path, json=body, headers=allowed)
    assert answer.status_code == route.ok, answer.text


async def test_waiting_on_another_owners_task_is_not_found_at_once(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    mine = bearer(await keys.token("a", "tasks:write", "tasks:read"))
    theirs = bearer(await keys.token("b", "tasks:read"))
    created = await client.post("/tasks", json={"message": "a's"}, headers=mine)
    task_id = created.json()["id"]
    # The task stays pending (no worker): a wait would last the whole 60 s.
    answer = await client.get(f"/tasks/{task_id}?wait=60", headers=theirs, timeout=30)
    assert answer.status_code == 404 and "detail" in answer.json()
    unknown = await client.get(f"/tasks/{uuid.uuid4()}?wait=0.01", headers=theirs)
    assert unknown.status_code == 404
    assert (await client.get(f"/tasks/{task_id}?wait=0.01", headers=mine)).status_code == 200


async def test_the_event_stream_of_a_key_is_its_owners(
    spawn_api: SpawnApi, settings: Settings, keys: Keys
) -> None:
    assert settings.auth_pepper is not None
    url = await spawn_api(AUTH="keys", AUTH_PEPPER=settings.auth_pepper.get_secret_value())
    reader = bearer(await keys.token("a", "tasks:read"))
    writers = {owner: bearer(await keys.token(owner, "tasks:write")) for owner in "ba"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        refused = await http.get("/events?owner=b", headers=reader)
        assert refused.status_code == 403 and "detail" in refused.json()
        async with http.stream("GET", "/events", headers=reader) as stream:
            assert stream.status_code == 200
            for owner, headers in writers.items():  # b's task first, then a's
                created = await http.post("/tasks", json={"message": owner}, headers=headers)
                assert created.status_code == 201, created.text
            seen = []
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:])["owner"])
                    if seen[-1] == "a":
                        break
    assert seen and set(seen) == {"a"}  # b's event, sent before a's, never came
