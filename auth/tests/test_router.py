"""Key management over HTTP (admin keys only), and the 401/403 answers it shares."""

from __future__ import annotations

import asyncpg
import httpx

from auth.tests.conftest import Keys, bearer
from tasks.tests.fixtures import Stores, app_client, make_settings


async def test_an_admin_creates_lists_and_revokes_keys(
    client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection
) -> None:
    admin = bearer(await keys.token("ops", "admin"))
    made = await client.post(
        "/keys",
        json={"owner": "acme", "scopes": ["tasks:read", "tasks:write"], "expires_in_seconds": 60},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["owner"], body["scopes"]) == ("acme", ["tasks:read", "tasks:write"])
    assert body["expires_at"] is not None and body["revoked_at"] is None
    token = body["key"]
    assert token.startswith(f"tl_{body['id']}_")
    assert (await client.get("/tasks", headers=bearer(token))).status_code == 200
    stored = await db.fetchrow("SELECT * FROM api_keys WHERE id = $1", body["id"])
    assert token.split("_", 2)[2] not in str(dict(stored))  # only a hash is kept

    listed = (await client.get("/keys", params={"owner": "acme"}, headers=admin)).json()
    assert [key["id"] for key in listed["items"]] == [body["id"]]
    assert "key" not in listed["items"][0] and "secret_hash" not in listed["items"][0]

    revoked = await client.delete(f"/keys/{body['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    again = await client.delete(f"/keys/{body['id']}", headers=admin)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert (await client.get("/tasks", headers=bearer(token))).status_code == 401
    assert (await client.get("/keys", params={"owner": "acme"}, headers=admin)).json() == {
        "items": []
    }
    everything = await client.get("/keys", params={"include_revoked": "true"}, headers=admin)
    assert len(everything.json()["items"]) == 2  # the admin's own key too


async def test_key_management_needs_an_admin_key(
    client: httpx.AsyncClient, keys: Keys, db: asyncpg.Connection
) -> None:
    almost = bearer(await keys.token("a", "tasks:write", "tasks:read", "queues:read", "consume"))
    before = await db.fetchval("SELECT count(*) FROM api_keys")
    made = await client.post("/keys", json={"owner": "a", "scopes": ["admin"]}, headers=almost)
    assert made.status_code == 403
    assert made.json()["detail"] == "this API key lacks the scope 'admin'"
    assert (await client.get("/keys", headers=almost)).status_code == 403
    assert (await client.delete("/keys/0123456789abcdef", headers=almost)).status_code == 403
    assert (await client.get("/keys")).status_code == 401
    assert await db.fetchval("SELECT count(*) FROM api_keys") == before


async def test_bad_key_requests_are_refused(client: httpx.AsyncClient, keys: Keys) -> None:
    admin = bearer(await keys.token("ops", "admin"))
    for body in (
        {"owner": "a", "scopes": []},
        {"owner": "a", "scopes": ["tasks:everything"]},
        {"owner": "a b", "scopes": ["admin"]},
        {"owner": "a", "scopes": ["admin"], "expires_at": "2000-01-01T00:00:00Z"},
        {"owner": "a", "scopes": ["admin"], "colour": "red"},
    ):
        assert (await client.post("/keys", json=body, headers=admin)).status_code == 422, body
    assert (await client.delete("/keys/0123456789abcdef", headers=admin)).status_code == 404
    assert (await client.delete("/keys/not-an-id", headers=admin)).status_code == 422


async def test_with_auth_none_anyone_is_admin_but_keys_need_a_pepper(
    database_url: str, stores: Stores, namespace: str
) -> None:
    settings = make_settings(database_url, stores.redis_url, namespace)
    async with app_client(settings) as http:
        assert (await http.post("/tasks", json={"message": "x", "owner": "b"})).status_code == 201
        assert (await http.get("/queues")).status_code == 200
        made = await http.post("/keys", json={"owner": "a", "scopes": ["admin"]})
    assert made.status_code == 409 and "AUTH_PEPPER" in made.json()["detail"]
