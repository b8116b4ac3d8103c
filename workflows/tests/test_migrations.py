"""Migrations 0008 (workflows, two columns of tasks) and 0009 (schedules):
existing tasks survive the upgrade and the downgrade, as plain tasks."""

from __future__ import annotations

import asyncpg

from tasks.tests.fixtures import plain_dsn
from tasks.tests.test_migrations import alembic, empty_database_url, tables

__all__ = ["empty_database_url"]  # the fixture, imported for this module's tests


async def columns(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks'"
    )
    return {row[0] for row in rows}


async def test_tasks_keep_their_rows_both_ways(empty_database_url: str) -> None:
    url = empty_database_url
    await alembic("upgrade", url, "0007")
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        task_id = await conn.fetchval(
            "INSERT INTO tasks (id, kind, message) VALUES (gen_random_uuid(), 'echo', 'old')"
            " RETURNING id"
        )
        await alembic("upgrade", url, "head")
        assert {"workflows", "workflow_steps", "workflow_members", "schedules"} <= await tables(url)
        assert {"workflow_id", "inputs"} <= await columns(conn)
        row = await conn.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        assert (row["message"], row["workflow_id"], row["inputs"]) == ("old", None, None)

        await alembic("downgrade", url, "0007")
        assert not {"workflows", "workflow_members", "schedules"} & await tables(url)
        assert not {"workflow_id", "inputs"} & await columns(conn)
        assert await conn.fetchval("SELECT message FROM tasks WHERE id = $1", task_id) == "old"
    finally:
        await conn.close()
