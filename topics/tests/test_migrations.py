"""Migration 0012: the count triggers count dead letters, and the first count
finds those made before it."""

from __future__ import annotations

import asyncpg

from tasks.tests.fixtures import plain_dsn
from tasks.tests.test_migrations import alembic, empty_database_url

__all__ = ["empty_database_url"]  # the fixture, for this module's test

INSERT = """
    INSERT INTO tasks (id, kind, message, status, queue, dead_from)
    VALUES (gen_random_uuid(), $1, 'm', $2, $3, $4)
"""
DEAD = """
    SELECT queue, sum(n)::int FROM (
        SELECT queue, count AS n FROM task_counts WHERE status = 'dead'
        UNION ALL
        SELECT queue, delta FROM task_count_changes WHERE status = 'dead') AS c
     GROUP BY queue ORDER BY queue
"""


async def test_dead_letters_made_before_it_are_counted(empty_database_url: str) -> None:
    url = empty_database_url
    await alembic("upgrade", url, "0011")
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = [
            ("message", "failed", "work", None),  # failed in its queue
            ("message", "pending", "dead", "work"),  # waiting in its dead queue
            ("message", "pending", "work", None),  # not a dead letter
            ("echo", "failed", "work", None),  # a task, not a message
        ]
        for row in rows:
            await conn.execute(INSERT, *row)
        await alembic("upgrade", url, "head")
        assert [tuple(r) for r in await conn.fetch(DEAD)] == [("work", 2)]
        await conn.execute(INSERT, "message", "failed", "other", None)  # the trigger counts it
        assert [tuple(r) for r in await conn.fetch(DEAD)] == [("other", 1), ("work", 2)]

        await alembic("downgrade", url, "0011")
        assert await conn.fetch(DEAD) == []
        await conn.execute(INSERT, "message", "failed", "other", None)  # no longer counted
        assert await conn.fetch(DEAD) == []
        active = await conn.fetchval(
            "SELECT sum(delta) FROM task_count_changes WHERE status = 'pending'"
        )
        assert active == 2  # the active counts go on as before
    finally:
        await conn.close()
