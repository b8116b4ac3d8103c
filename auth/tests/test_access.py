"""Every tasks route against every kind of caller: no key, a bad key, a revoked
or expired key, a key without the scope, another tenant's key, an admin key.
A refusal writes nothing; another tenant's task is answered like an unknown id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from app.ids import uuid7
from app.lifespan import Resources
from auth.tests.conftest import Keys, bearer

ALL_BUT_ADMIN = ("tasks:write", "tasks:read", "queues:read", "consume")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    body: dict[str, Any] | None = None
    ok: int = 200
    other_tenant: int = 404  # another tenant's task: not found


ROUTES = {
    "create": Route(
        "POST", "/tasks", "tasks:write", {"message": "hi", "owner": "a"}, ok=201, other_tenant=403
    ),
    "get": Route("GET", "/tasks/{id}", "tasks:read"),
    "list": Route("GET", "/tasks", "tasks:read", other_tenant=200),
    "cancel": Route("PATCH", "/tasks/{id}", "tasks:write", {"status": "canceled"}),
    "retry": Route("POST", "/tasks/{id}/retry", "tasks:write"),
    "queues": Route("GET", "/queues", "queues:read", other_tenant=200),
}


async def snapshot(db: asyncpg.Connection, resources: Resources) -> tuple[Any, ...]:
    """Every row as it stands, and the doorbell: what a refusal must leave alone."""
    rows = await db.fetch(
        "SELECT id, owner, status, attempts, redrives, cancel_requested, updated_at"
        " FROM tasks ORDER BY id"
    )
    ready = await resources.redis.zrange(resources.keys.ready("default"), 0, -1)
    keys = await db.fetch("SELECT id, revoked_at FROM api_keys ORDER BY id")
    return [tuple(row) for row in rows], sorted(ready), [tuple(row) for row in keys]


async def tenant_task(client: httpx.AsyncClient, token: str, db: asyncpg.Connection,
                      name: str) -> str:  # fmt: skip
    """A task of tenant "a": pending, or failed for the retry route."""
    created = await client.post("/tasks", json={"message": name}, headers=bearer(token))
    assert created.status_code == 201, created.text
    assert created.json()["owner"] == "a"
    task_id = created.json()["id"]
    if name == "retry":
        await db.execute("UPDATE tasks SET status = 'failed' WHERE id = $1", uuid.UUID(task_id))
    return str(task_id)


async def call(client: httpx.AsyncClient, route: Route, task_id: str,
               headers: dict[str, str]) -> httpx.Response:  # fmt: skip
    return await client.request(
        route.method, route.path.format(id=task_id), json=route.body, headers=headers
    )


@pytest.mark.parametrize("name", list(ROUTES))
async def test_each_route_against_each_kind_of_caller(
    name: str, client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection, resources: Resources
) -> None:
    route = ROUTES[name]
    owner_token = await keys.token("a", *ALL_BUT_ADMIN)
    task_id = await tenant_task(client, owner_token, db, name)
    key_id, _ = await keys.make("a", *ALL_BUT_ADMIN)
    refused: dict[str, tuple[dict[str, str], int]] = {
        "no key": ({}, 401),
        "not a key": (bearer("hello"), 401),
        "wrong secret": (bearer(f"tl_{key_id}_{'x' * 43}"), 401),
        "bad X-API-Key": ({"X-API-Key": f"tl_{key_id}_{'y' * 43}"}, 401),
        "revoked": (bearer(await keys.revoked("a", *ALL_BUT_ADMIN)), 401),
        "expired": (bearer(await keys.expired("a", *ALL_BUT_ADMIN, db=db)), 401),
        "without the scope": (
            bearer(await keys.token("a", *(s for s in ALL_BUT_ADMIN if s != route.scope))),
            403,
        ),
    }
    if route.other_tenant != 200:
        refused["other tenant"] = (
            bearer(await keys.token("b", *ALL_BUT_ADMIN)),
            route.other_tenant,
        )
    before = await snapshot(db, resources)
    for case, (headers, status) in refused.items():
        answer = await call(client, route, task_id, headers)
        assert answer.status_code == status, (case, answer.text)
        assert isinstance(answer.json()["detail"], str), case
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer"), case
        if case == "without the scope":
            assert answer.json()["detail"] == f"this API key lacks the scope '{route.scope}'"
        assert await snapshot(db, resources) == before, f"{case} changed something"

    other = await call(client, route, task_id, bearer(await keys.token("b", *ALL_BUT_ADMIN)))
    admin = await call(client, route, task_id, bearer(await keys.token("ops", "admin")))
    assert (other.status_code, admin.status_code) == (route.other_tenant, route.ok), admin.text
    if name == "list":
        assert other.json()["items"] == []
        assert [task["id"] for task in admin.json()["items"]] == [task_id]
    if name == "queues":
        assert [queue["pending"] for queue in other.json()["queues"]] == [0]
        assert [queue["pending"] for queue in admin.json()["queues"]] == [1]


async def test_the_owner_of_the_key_reads_and_changes_its_own_tasks(
    client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection
) -> None:
    token = bearer(await keys.token("a", *ALL_BUT_ADMIN))
    task_id = await tenant_task(client, token["Authorization"][7:], db, "mine")
    assert (await client.get(f"/tasks/{task_id}", headers=token)).status_code == 200
    assert [t["id"] for t in (await client.get("/tasks", headers=token)).json()["items"]] == [
        task_id
    ]
    queues = (await client.get("/queues", headers=token)).json()["queues"]
    assert [(q["name"], q["pending"]) for q in queues] == [("default", 1)]
    canceled = await client.patch(f"/tasks/{task_id}", json={"status": "canceled"}, headers=token)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    retried = await client.post(f"/tasks/{task_id}/retry", headers=token)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    x_api_key = {"X-API-Key": token["Authorization"][7:]}
    assert (await client.get(f"/tasks/{task_id}", headers=x_api_key)).status_code == 200


async def test_an_admin_may_create_for_any_owner_others_only_for_their_own(
    client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection
) -> None:
    writer = bearer(await keys.token("a", "tasks:write"))
    admin = bearer(await keys.token("ops", "admin"))
    plain = await client.post("/tasks", json={"message": "x"}, headers=writer)
    same = await client.post("/tasks", json={"message": "x", "owner": "a"}, headers=writer)
    other = await client.post("/tasks", json={"message": "x", "owner": "b"}, headers=writer)
    assert (plain.status_code, same.status_code, other.status_code) == (201, 201, 403)
    assert plain.json()["owner"] == same.json()["owner"] == "a"
    assert "owner" in other.json()["detail"]
    for_b = await client.post("/tasks", json={"message": "x", "owner": "b"}, headers=admin)
    own = await client.post("/tasks", json={"message": "x"}, headers=admin)
    assert (for_b.json()["owner"], own.json()["owner"]) == ("b", "ops")
    assert await db.fetchval("SELECT count(*) FROM tasks") == 4


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/tasks/{id}", None),
        ("PATCH", "/tasks/{id}", {"status": "canceled"}),
        ("POST", "/tasks/{id}/retry", None),
    ],
)
async def test_another_tenants_task_is_answered_like_an_id_that_does_not_exist(
    method: str, path: str, body: Any, client: httpx.AsyncClient, keys: Keys,
    db: asyncpg.Connection,
) -> None:  # fmt: skip
    theirs = await tenant_task(client, await keys.token("a", "tasks:write"), db, "retry")
    mine = bearer(await keys.token("b", *ALL_BUT_ADMIN))
    missing = str(uuid7())
    hidden = await client.request(method, path.format(id=theirs), json=body, headers=mine)
    unknown = await client.request(method, path.format(id=missing), json=body, headers=mine)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == {"detail": unknown.json()["detail"].replace(missing, theirs)}
    drop = {"date", "content-length"}
    assert {k: v for k, v in hidden.headers.items() if k not in drop} == {
        k: v for k, v in unknown.headers.items() if k not in drop
    }
