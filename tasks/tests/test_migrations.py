"""The Alembic migrations: they build, remove and rebuild the schema the models describe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import tasks.models  # noqa: F401  (registers the tables on Base.metadata)
from alembic import command
from app.db import Base
from app.migrate import alembic_config
from tasks.models import TaskStatus
from tasks.tests.fixtures import Stores, plain_dsn, with_database


@pytest.fixture
async def empty_database_url(stores: Stores) -> AsyncIterator[str]:
    """A database of this test's own with nothing in it, dropped afterwards."""
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_dsn(stores.admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(stores.admin_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        return {row["tablename"] for row in rows}
    finally:
        await conn.close()


async def alembic(name: str, url: str, revision: str) -> None:
    """Alembic's env.py runs its own event loop, so it runs in a thread."""
    await asyncio.to_thread(getattr(command, name), alembic_config(url), revision)


async def test_upgrade_downgrade_and_upgrade_again(empty_database_url: str) -> None:
    url = empty_database_url
    assert "tasks" not in await tables(url)

    await alembic("upgrade", url, "head")
    assert {"tasks", "alembic_version"} <= await tables(url)

    await alembic("downgrade", url, "base")
    assert "tasks" not in await tables(url)

    await alembic("upgrade", url, "head")
    assert "tasks" in await tables(url)
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head
        task_id = await conn.fetchval(
            "INSERT INTO tasks (id, kind, message) VALUES (gen_random_uuid(), 'echo', 'hi')"
            " RETURNING id"
        )
        task = await conn.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
    finally:
        await conn.close()
    assert (task["status"], task["attempts"], task["max_attempts"]) == ("pending", 0, 3)
    assert task["created_at"] is not None and task["run_at"] is not None


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_models_match_the_migrations(empty_database_url: str) -> None:
    url = empty_database_url
    await alembic("upgrade", url, "head")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


async def test_check_constraints_and_partial_indexes_match_the_models(
    empty_database_url: str,
) -> None:
    """Autogenerate does not compare CHECK constraints or index predicates; these do."""
    url = empty_database_url
    await alembic("upgrade", url, "head")
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        checks = await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
            " WHERE conrelid = 'tasks'::regclass AND contype = 'c'"
        )
        predicates = await conn.fetch(
            "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) AS predicate"
            "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'tasks'::regclass AND i.indpred IS NOT NULL"
        )
    finally:
        await conn.close()

    table = Base.metadata.tables["tasks"]
    model_checks = {
        str(constraint.name)
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }
    assert {row["conname"] for row in checks} == model_checks
    status_check = next(r["definition"] for r in checks if r["conname"] == "ck_tasks_status_known")
    assert all(f"'{status.value}'" in status_check for status in TaskStatus), status_check
    model_partial = {
        str(index.name): str(index.dialect_options["postgresql"]["where"])
        for index in table.indexes
        if index.dialect_options["postgresql"]["where"] is not None
    }
    assert set(model_partial) == {row["relname"] for row in predicates}
    for row in predicates:
        # PostgreSQL prints `status = 'pending'` as `((status)::text = 'pending'::text)`.
        model = model_partial[row["relname"]]
        expected = "'" + model.split("'")[1] + "'" if "'" in model else model
        assert expected in row["predicate"], row
