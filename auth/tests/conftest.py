"""Fixtures of the access-control tests: the task feature's real PostgreSQL and
Valkey (a database and a Redis namespace per test), an API with AUTH=keys, and
keys of every kind made through the service, as `taskline keys create` makes them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.lifespan import Resources, close_resources, open_resources
from auth import service

# The task feature's fixtures (database_url, stores, namespace, db, start_worker)
# come from tasks/tests/fixtures.py, which the root conftest loads for every package.
from tasks.tests.fixtures import Stores, app_client, make_settings


def keys_settings(database_url: str, stores: Stores, namespace: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"auth": "keys", "auth_pepper": secrets.token_hex(32), **overrides}
    return make_settings(database_url, stores.redis_url, namespace, **values)


@pytest.fixture
def settings(database_url: str, stores: Stores, namespace: str) -> Settings:
    """AUTH=keys, with a pepper of this test's own."""
    return keys_settings(database_url, stores, namespace)


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    opened = open_resources(settings)
    yield opened
    await close_resources(opened)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API in this process; a 500 comes back as an answer, so tests can see it."""
    async with app_client(settings) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Keys:
    """Tokens of every kind the tests need, for owners "a" (the tenant) and "b"."""

    resources: Resources

    async def make(
        self, owner: str, *scopes: str, expires_at: datetime | None = None
    ) -> tuple[str, str]:
        """(key id, token)."""
        row, token = await service.create_key(
            resources=self.resources, owner=owner, scopes=list(scopes), expires_at=expires_at
        )
        return row.id, token

    async def token(self, owner: str, *scopes: str) -> str:
        return (await self.make(owner, *scopes))[1]

    async def revoked(self, owner: str, *scopes: str) -> str:
        key_id, token = await self.make(owner, *scopes)
        await service.revoke_key(resources=self.resources, key_id=key_id)
        return token

    async def expired(self, owner: str, *scopes: str, db: asyncpg.Connection) -> str:
        key_id, token = await self.make(
            owner, *scopes, expires_at=datetime.now(UTC) + timedelta(hours=1)
        )
        await db.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", key_id
        )
        return token


@pytest.fixture
def keys(resources: Resources) -> Keys:
    return Keys(resources)


TokenFactory = Callable[..., Any]
