"""Tenants under load, and the admission controls keyed on the key's owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from app.lifespan import close_resources, open_resources
from auth.tests.conftest import Keys, bearer, keys_settings
from tasks.tests.fixtures import Stores, app_client


@asynccontextmanager
async def api_and_keys(
    database_url: str, stores: Stores, namespace: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Keys]]:
    settings = keys_settings(database_url, stores, namespace, **overrides)
    resources = open_resources(settings)
    try:
        async with app_client(settings) as http:
            yield http, Keys(resources)
    finally:
        await close_resources(resources)


async def test_two_tenants_creating_500_tasks_each_see_exactly_their_own(
    client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection
) -> None:
    tokens = {owner: await keys.token(owner, "tasks:write", "tasks:read") for owner in "ab"}
    gate = asyncio.Semaphore(64)

    async def create(owner: str, number: int) -> str:
        async with gate:
            answer = await client.post(
                "/tasks", json={"message": f"{owner}{number}"}, headers=bearer(tokens[owner])
            )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    jobs = [create(owner, n) for n in range(500) for owner in "ab"]  # interleaved
    created = await asyncio.gather(*jobs)
    made = {"a": set(created[0::2]), "b": set(created[1::2])}
    for owner in "ab":
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = await client.get("/tasks", params=params, headers=bearer(tokens[owner]))
            assert page.status_code == 200
            seen += [task["id"] for task in page.json()["items"]]
            assert {task["owner"] for task in page.json()["items"]} <= {owner}
            if (cursor := page.json()["next_cursor"]) is None:
                break
        assert len(seen) == 500 and set(seen) == made[owner]
    rows = await db.fetch("SELECT owner, count(*) AS n FROM tasks GROUP BY owner ORDER BY owner")
    assert [(row["owner"], row["n"]) for row in rows] == [("a", 500), ("b", 500)]


async def test_the_rate_limit_is_one_bucket_per_owner_whatever_its_keys(
    database_url: str, stores: Stores, namespace: str
) -> None:
    limited = api_and_keys(database_url, stores, namespace, rate_limit="1/m burst 2")
    async with limited as (http, keys):
        first = await keys.token("a", "tasks:write")
        second = await keys.token("a", "tasks:write")
        other = await keys.token("b", "tasks:write")

        async def post(token: str) -> int:
            body = {"message": "x"}
            return (await http.post("/tasks", json=body, headers=bearer(token))).status_code

        owner_a = [await post(first), await post(second), await post(first), await post(second)]
        owner_b = [await post(other) for _ in range(3)]
    assert owner_a == [201, 201, 429, 429]  # two keys, one owner: one bucket
    assert owner_b == [201, 201, 429]


async def test_fairness_counts_the_owner_of_the_key(
    database_url: str, stores: Stores, namespace: str
) -> None:
    async with api_and_keys(database_url, stores, namespace, fairness="levels") as (http, keys):
        busy, quiet = await keys.token("a", "tasks:write"), await keys.token("b", "tasks:write")

        async def level(token: str) -> int:
            answer = await http.post("/tasks", json={"message": "x"}, headers=bearer(token))
            assert answer.status_code == 201
            return int(answer.json()["fair_level"])

        levels = [await level(busy) for _ in range(7)]
        newcomer = await level(quiet)
    assert levels == [0, 1, 1, 1, 1, 1, 2]
    assert newcomer == 0


async def test_another_owners_idempotency_key_is_refused_not_replayed(
    client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection
) -> None:
    """Keys are one namespace for every owner: the same key and body from another
    owner must not hand over the first owner's task."""
    body = {"message": "charge order 42"}
    first, second = [bearer(await keys.token(owner, "tasks:write")) for owner in "ab"]
    created = await client.post("/tasks", json=body, headers={**first, "Idempotency-Key": "k"})
    replay = await client.post("/tasks", json=body, headers={**first, "Idempotency-Key": "k"})
    other = await client.post("/tasks", json=body, headers={**second, "Idempotency-Key": "k"})
    assert (created.status_code, replay.status_code) == (201, 200), replay.text
    assert other.status_code == 422, other.text
    assert set(other.json()) == {"detail"}
    assert await db.fetchval("SELECT count(*) FROM tasks") == 1
