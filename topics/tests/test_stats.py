"""The numbers of declared queues (topics/repository/stats.py): dead letters from
the trigger-kept counts (migration 0012) stay equal to a count of the rows
through every path that makes or unmakes one; the oldest unacked message."""

from __future__ import annotations

import asyncpg
import httpx

from app.lifespan import Resources
from tasks import repository as tasks_repository
from tasks.doorbell import Doorbell
from tasks.worker import maintenance
from topics import repository
from topics.tests.conftest import create_queue, lease, put, settle

# What GET /queues/{id}/stats counted before the counts kept them: the rows.
TRUTH = """
    SELECT q.id,
           (SELECT count(*) FROM tasks
             WHERE dead_from = q.id AND kind = 'message' AND status = 'pending')
         + (SELECT count(*) FROM tasks
             WHERE queue = q.id AND kind = 'message' AND status = 'failed')
      FROM queues q ORDER BY q.id
"""


async def dead_counts(resources: Resources) -> dict[str, int]:
    async with tasks_repository.driver_connection(resources.engine) as conn:
        rows = await repository.message_summaries(conn=conn)
    return {row["queue"]: int(row["dead"]) for row in rows}


async def check(db: asyncpg.Connection, resources: Resources) -> dict[str, int]:
    truth = {row[0]: int(row[1]) for row in await db.fetch(TRUTH)}
    assert await dead_counts(resources) == truth
    return truth


async def nack_all(client: httpx.AsyncClient, queue: str) -> None:
    for message in await lease(client, queue, max_messages=100):
        assert (await settle(client, message, "nack")).status_code == 204


async def test_dead_counts_follow_every_path(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await create_queue(client, "dead")
    await create_queue(client, "work", message_max_deliveries=1, dead_queue_id="dead")
    await create_queue(client, "alone", message_max_deliveries=1)
    await put(client, "work", *range(4))
    await put(client, "alone", *range(3))
    await nack_all(client, "work")  # four wait in the dead queue
    await nack_all(client, "alone")  # three end failed
    assert await check(db, resources) == {"alone": 3, "dead": 0, "work": 4}

    [taken] = await lease(client, "dead")  # leased from the dead queue: no longer waiting
    assert await check(db, resources) == {"alone": 3, "dead": 0, "work": 3}
    assert (await settle(client, taken, "nack")).status_code == 204  # back to waiting there
    assert await check(db, resources) == {"alone": 3, "dead": 0, "work": 4}

    async with tasks_repository.driver_connection(resources.engine) as conn:
        await tasks_repository.fold_count_changes(conn=conn)
    assert await check(db, resources) == {"alone": 3, "dead": 0, "work": 4}

    redrive = await client.post("/queues/work/redrive", json={"max_messages": 2})
    assert redrive.json() == {"redriven": 2}
    assert (await client.post("/queues/alone/redrive")).json() == {"redriven": 3}
    assert await check(db, resources) == {"alone": 0, "dead": 0, "work": 2}

    await nack_all(client, "alone")
    await db.execute("UPDATE tasks SET expires_at = now() WHERE queue = 'dead'")
    await maintenance.sweep_finished(resources.engine, resources, Doorbell(resources))
    assert await check(db, resources) == {"alone": 3, "dead": 0, "work": 0}

    assert (await client.delete("/queues/alone")).status_code == 204
    assert await dead_counts(resources) == {"dead": 0, "work": 0}
    left = await db.fetchval(
        "SELECT sum(n) FROM (SELECT count AS n FROM task_counts WHERE queue = 'alone'"
        " UNION ALL SELECT delta FROM task_count_changes WHERE queue = 'alone') AS c"
    )
    assert left == 0  # its deleted dead letters were counted off


async def test_the_oldest_unacked_message_of_each_queue(
    client: httpx.AsyncClient, db: asyncpg.Connection, resources: Resources
) -> None:
    await create_queue(client, "work")
    await create_queue(client, "quiet")
    first, _ = await put(client, "work", 1, 2)
    await db.execute(
        "UPDATE tasks SET created_at = now() - interval '1 hour' WHERE id = $1::uuid", first
    )
    await lease(client, "work")  # the oldest is leased: still unacked
    async with tasks_repository.driver_connection(resources.engine) as conn:
        rows = {r["queue"]: r for r in await repository.message_summaries(conn=conn)}
        one = await repository.message_stats(conn=conn, queue_id="work")
        missing = await repository.message_stats(conn=conn, queue_id="nope")
    assert 3600 <= rows["work"]["oldest_unacked_age_s"] < 3700
    assert rows["quiet"]["oldest_unacked_age_s"] is None
    assert one is not None and one["oldest_unacked_age_s"] >= 3600 and missing is None
