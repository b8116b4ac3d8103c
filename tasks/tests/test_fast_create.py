"""POST /tasks through its fast path (tasks/fast_create.py) answers exactly what
FastAPI's route answers. The same requests go to the app and to the same app
without the fast path (both on this test's stores), and their answers are
compared: status, headers and body, all but what differs from task to task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request, Security

from app.config import Settings
from app.http import MAX_BODY_BYTES
from app.lifespan import close_resources, open_resources
from auth import service as keys_service
from auth.caller import Caller, Scope
from auth.dependencies import require
from main import create_app
from tasks.dependencies import Writer, get_writer
from tasks.fast_create import FastCreate
from tasks.tests.fixtures import Stores, free_port, make_settings

# What is new with every task, or every answer.
VOLATILE_FIELDS = {"id", "created_at", "updated_at", "run_at"}
VOLATILE_HEADERS = {"location", "content-length", "date"}


@dataclass
class Apps:
    fast: httpx.AsyncClient
    plain: httpx.AsyncClient
    route_calls: list[str] = field(default_factory=list)  # requests FastAPI's route took

    async def both(self, body: Any = None, **request: Any) -> tuple[Any, Any]:
        """One request to each app: their answers, with what differs per task left out."""
        if body is not None:
            request["json"] = body
        fast = await self.fast.post("/tasks", **request)
        plain = await self.plain.post("/tasks", **request)
        return comparable(fast), comparable(plain)


def comparable(answer: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in answer.headers.items() if k not in VOLATILE_HEADERS}
    body = answer.json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in VOLATILE_FIELDS}
    return answer.status_code, headers, body


def without_fast_path(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastCreate]
    return app


@asynccontextmanager
async def two_apps(settings: Settings) -> AsyncIterator[Apps]:
    fast, plain = create_app(settings), without_fast_path(create_app(settings))
    async with AsyncExitStack() as stack:
        clients = []
        for app in (fast, plain):
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://test")
            clients.append(await stack.enter_async_context(client))
        apps = Apps(*clients)

        async def counted_writer(
            request: Request,
            caller: Annotated[Caller, Security(require, scopes=[Scope.TASKS_WRITE])],
        ) -> Writer:
            apps.route_calls.append(request.url.query)
            return await get_writer(request, caller)

        fast.dependency_overrides[get_writer] = counted_writer
        yield apps


@pytest.fixture
async def apps(settings: Settings) -> AsyncIterator[Apps]:
    async with two_apps(settings) as found:
        yield found


async def test_a_new_task_and_a_replayed_key_answer_as_the_route_does(
    apps: Apps, db: asyncpg.Connection
) -> None:
    fast, plain = await apps.both({"message": "hi", "payload": {"n": 1}, "priority": 2})
    assert fast == plain
    assert fast[0] == 201 and fast[2]["status"] == "pending"
    assert fast[1]["content-type"] == "application/json"
    assert fast[1]["x-content-type-options"] == "nosniff"  # the headers middleware ran

    first = await apps.fast.post(
        "/tasks", json={"message": "once"}, headers={"Idempotency-Key": "k-1"}
    )
    again = await apps.fast.post(
        "/tasks", json={"message": "once"}, headers={"Idempotency-Key": "k-1"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] == f"/tasks/{first.json()['id']}"
    assert apps.route_calls == []  # all of it went the fast way ...
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE message = 'once'") == 1

    waited = await apps.fast.post("/tasks?wait=0.1", json={"message": "waits"})
    assert waited.status_code == 202
    assert apps.route_calls == ["wait=0.1"]  # ... but a request with a query goes the usual way


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"message": "x", "extra": 1}, {}),  # a field the body does not have
        ({"message": ""}, {}),
        ({"message": "x", "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5}, {}),
        ({"message": "x", "kind": "no_such_kind"}, {}),  # valid body, unknown kind
        ({"message": "x"}, {"Idempotency-Key": "bad key with spaces"}),
        ([{"message": "a list"}], {}),
    ],
)
async def test_refusals_answer_as_the_route_does(
    apps: Apps, db: asyncpg.Connection, body: Any, headers: dict[str, str]
) -> None:
    before = await db.fetchval("SELECT count(*) FROM tasks")
    fast, plain = await apps.both(body, headers=headers)
    assert fast == plain
    if fast[0] != 201:
        assert fast[0] == 422 and set(fast[2]) >= {"detail"}
        assert await db.fetchval("SELECT count(*) FROM tasks") == before  # nothing written


async def test_a_key_reused_with_another_body_is_refused_as_by_the_route(apps: Apps) -> None:
    answers = []
    for client, key in ((apps.fast, "fast-key"), (apps.plain, "plain-key")):
        headers = {"Idempotency-Key": key}
        created = await client.post("/tasks", json={"message": "x"}, headers=headers)
        assert created.status_code == 201
        answers.append(
            comparable(await client.post("/tasks", json={"message": "y"}, headers=headers))
        )
    fast, plain = answers
    assert fast[0] == 422 and fast[1] == plain[1]
    assert fast[2] == {**plain[2], "detail": plain[2]["detail"].replace("plain-key", "fast-key")}
    assert apps.route_calls == []


async def test_bodies_that_are_not_json_or_too_large_answer_as_the_route_does(
    apps: Apps, db: asyncpg.Connection
) -> None:
    json_type = {"Content-Type": "application/json"}
    cases = [
        {"content": b"{not json", "headers": json_type},
        {"content": b"", "headers": json_type},
        {"content": b'{"message": "x"}', "headers": {"Content-Type": "text/plain"}},
        {"content": b"\xff\xfe", "headers": json_type},
        {"content": b'{"message": "' + b"x" * MAX_BODY_BYTES + b'"}', "headers": json_type},
    ]
    for request in cases:
        fast, plain = await apps.both(**request)
        assert fast == plain, request["content"][:20]
        assert fast[0] in (413, 422)
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_keys_and_scopes_are_checked_as_the_route_checks_them(
    database_url: str, stores: Stores, namespace: str
) -> None:
    settings = make_settings(
        database_url, stores.redis_url, namespace, auth="keys", auth_pepper="p" * 64
    )
    resources = open_resources(settings)
    made = {}
    for name, scopes in (("reader", ["tasks:read"]), ("writer", ["tasks:write"])):
        _, made[name] = await keys_service.create_key(
            resources=resources, owner="acme", scopes=scopes, expires_at=None
        )
    await close_resources(resources)
    async with two_apps(settings) as keyed:
        body = {"message": "x"}
        unknown = {"Authorization": "Bearer tl_nope_nope"}
        for headers in ({}, unknown, {"X-API-Key": made["reader"]}):
            fast, plain = await keyed.both(body, headers=headers)
            assert fast == plain
            assert fast[0] in (401, 403)
        as_writer = {"Authorization": f"Bearer {made['writer']}"}
        fast, plain = await keyed.both(body, headers=as_writer)
        assert fast == plain and fast[0] == 201 and fast[2]["owner"] == "acme"
        other_owner = await keyed.fast.post("/tasks", json={**body, "owner": "globex"},
                                            headers=as_writer)  # fmt: skip
        assert other_owner.status_code == 403
        assert keyed.route_calls == []


@pytest.mark.parametrize("down", ["postgres", "redis"])
async def test_a_store_that_is_down_is_a_503_as_from_the_route(
    database_url: str, stores: Stores, namespace: str, db: asyncpg.Connection, down: str
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    if down == "postgres":
        settings = make_settings(f"postgresql+asyncpg://postgres@{nowhere}/x",
                                 stores.redis_url, namespace)  # fmt: skip
    else:
        settings = make_settings(database_url, f"redis://{nowhere}/0", namespace)
    async with two_apps(settings) as broken:
        fast, plain = await broken.both({"message": "x"})
        assert broken.route_calls == []
    assert fast == plain
    assert fast[0] == 503 and fast[1]["retry-after"] and down in fast[2]["detail"]
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
