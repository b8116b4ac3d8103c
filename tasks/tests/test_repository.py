"""The SQL of the task feature, run against a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections import Counter
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

from app.ids import uuid7
from app.lifespan import Resources
from tasks import repository
from tasks.models import TaskStatus
from tasks.repository import Outcome, claims
from tasks.repository import api as api_statements
from tasks.submissions import NewTask


def connection(resources: Resources) -> AbstractAsyncContextManager[Any]:
    """The driver connection the worker's statements run on."""
    return repository.driver_connection(resources.engine)


def new_task(number: int = 0, **fields: Any) -> NewTask:
    values: dict[str, Any] = {
        "id": uuid7(),
        "kind": "echo",
        "message": f"m{number}",
        "payload": {},
        "max_attempts": 3,
        "timeout_seconds": 300.0,
        **fields,
    }
    return NewTask(**values)


async def add_tasks(resources: Resources, count: int, *, kind: str = "echo") -> list[uuid.UUID]:
    tasks = [new_task(number, kind=kind) for number in range(count)]
    async with connection(resources) as conn:
        rows = await repository.insert_tasks(conn=conn, tasks=tasks)
    assert [row["id"] for row in rows] == [task.id for task in tasks]
    return [task.id for task in tasks]


async def claim(
    resources: Resources, ids: list[uuid.UUID], worker_id: str, lease_s: float = 60
) -> list[repository.ClaimedTask]:
    async with connection(resources) as conn:
        return await repository.claim(conn=conn, ids=ids, worker_id=worker_id, lease_s=lease_s)


async def row(db: asyncpg.Connection, task_id: uuid.UUID) -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)


async def test_insert_then_get_returns_the_stored_task(resources: Resources) -> None:
    fresh = new_task(kind="sleep", message="nap", payload={"seconds": 1})
    async with connection(resources) as conn:
        [stored] = await repository.insert_tasks(conn=conn, tasks=[fresh])
    assert (stored["status"], stored["payload"], stored["errors"]) == (
        "pending",
        {"seconds": 1},
        [],
    )
    task_id = fresh.id
    async with resources.sessionmaker() as session:
        task = await repository.get_task(session=session, task_id=task_id, owner=None)
        missing = await repository.get_task(session=session, task_id=uuid7(), owner=None)
    assert task is not None and missing is None
    assert (task.kind, task.message, task.payload) == ("sleep", "nap", {"seconds": 1})
    assert (task.status, task.attempts, task.max_attempts) == ("pending", 0, 3)
    assert task.created_at is not None and task.finished_at is None


@pytest.mark.parametrize("alone", [False, True], ids=["together", "one at a time"])
async def test_insert_answers_each_row_as_select_reads_it(
    resources: Resources, alone: bool
) -> None:
    """insert_tasks answers rows made from what it sent and the times PostgreSQL
    set (fresh_row): each must be the stored row, column for column. A lone
    task has a statement of its own; a key taken leaves it out of the answer."""
    now = datetime.now(UTC)
    payload = {"seconds": 1, "nested": {"b": [1, 2.5, None, "é"], "a": True}}
    tasks = [
        new_task(0),
        new_task(
            1, kind="sleep", payload=payload, run_at=now + timedelta(hours=1),
            expires_at=now + timedelta(days=1), idempotency_key=f"key-{uuid7()}",
            request_hash="h" * 64, queue="mail", priority=2, fair_level=3, owner="acme",
            workflow_id=uuid7(), inputs={"parent_result": [7]}, timeout_seconds=1.5,
        ),
        new_task(2, run_at=now - timedelta(hours=1)),  # in the past: stored as now
    ]  # fmt: skip
    async with connection(resources) as conn:
        if alone:
            answered = [
                row for t in tasks for row in await repository.insert_tasks(conn=conn, tasks=[t])
            ]
            again = replace(tasks[1], id=uuid7())  # the same key
            assert await repository.insert_tasks(conn=conn, tasks=[again]) == []
        else:
            answered = await repository.insert_tasks(conn=conn, tasks=tasks)
        stored = await conn.fetch("SELECT * FROM tasks WHERE id = ANY($1::uuid[])",
                                  [task.id for task in tasks])  # fmt: skip
    assert len(answered) == 3
    assert {row["id"]: row for row in answered} == {row["id"]: dict(row) for row in stored}


@pytest.mark.parametrize(
    ("nullable_set", "delayed"),
    [(True, True), (False, True), (False, False)],
    ids=["a task sets a usually NULL column", "one is delayed", "all are due now"],
)
async def test_a_large_group_without_keys_is_copied_and_answered_as_stored(
    resources: Resources, nullable_set: bool, delayed: bool
) -> None:
    """From COPY_FROM tasks without keys the rows are copied: each answered row
    must still be the stored one, run_at never in the past, and the count
    trigger must count them as it counts an INSERT's. Columns every task leaves
    at its default (owner, expiry, workflow; run_at when all are due now) are
    left out of the copy: the stored rows must not differ."""
    now = datetime.now(UTC)
    tasks = [new_task(number, queue="bulk") for number in range(repository.COPY_FROM)]
    nullable: dict[str, Any] = {
        "owner": "acme", "expires_at": now + timedelta(days=1), "workflow_id": uuid7(),
        "inputs": {"parent_result": 7},
    }  # fmt: skip
    tasks[1] = new_task(1, queue="bulk", run_at=now + timedelta(hours=1) if delayed else None,
                        payload={"n": [1, 2.5]}, **(nullable if nullable_set else {}))  # fmt: skip
    tasks[2] = new_task(2, queue="bulk", run_at=now - timedelta(hours=1))
    async with connection(resources) as conn:
        answered = await repository.insert_tasks(conn=conn, tasks=tasks)
        stored = await conn.fetch("SELECT * FROM tasks WHERE queue = 'bulk'")
        [counts] = [r for r in await repository.queue_counts(conn=conn) if r["queue"] == "bulk"]
    assert [row["id"] for row in answered] == [task.id for task in tasks]
    assert {row["id"]: row for row in answered} == {row["id"]: dict(row) for row in stored}
    assert answered[2]["run_at"] == answered[2]["created_at"]  # a past run_at: now
    assert (counts["pending"], counts["scheduled"]) == (repository.COPY_FROM, int(delayed))


class SliceFailed(Exception):
    pass


@pytest.mark.parametrize("failing", [0, 1], ids=["first slice", "second slice"])
async def test_a_slice_that_fails_to_be_made_leaves_nothing_and_the_connection_free(
    resources: Resources, failing: int
) -> None:
    """Slices are made while PostgreSQL works (the first while it reads now(),
    the next while it copies the one before): a slice that raises stops the
    command in flight, the transaction rolls back whole, and the connection
    takes the next statement."""
    made = [[new_task(number, queue="torn") for number in range(start, start + 3)]
            for start in (0, 3, 6)]  # fmt: skip

    def slices() -> Any:
        for index, tasks in enumerate(made):
            if index == failing:
                raise SliceFailed
            yield tasks

    async with connection(resources) as conn:
        with pytest.raises(SliceFailed):
            async with conn.transaction():
                await repository.copy_slices(conn=conn, slices=slices())
        assert await conn.fetchval("SELECT count(*) FROM tasks WHERE queue = 'torn'") == 0
        async with conn.transaction():
            rows = await repository.copy_slices(conn=conn, slices=iter(made))
        assert await conn.fetchval("SELECT count(*) FROM tasks WHERE queue = 'torn'") == 9
    assert [row["id"] for row in rows] == [task.id for tasks in made for task in tasks]


async def test_list_is_newest_first_filtered_and_keyset_paged(
    resources: Resources, db: asyncpg.Connection
) -> None:
    echoes = await add_tasks(resources, 3, kind="echo")
    sleeps = await add_tasks(resources, 3, kind="sleep")
    await db.execute("UPDATE tasks SET status = 'completed' WHERE id = ANY($1)", echoes[:2])
    await db.execute("UPDATE tasks SET status = 'completed' WHERE id = ANY($1)", sleeps[1:])
    newest_first = sorted(echoes + sleeps, reverse=True)

    async def listed(**filters: Any) -> list[uuid.UUID]:
        args = {"status": None, "kind": None, "before_id": None, "limit": 50, "owner": None}
        args.update(filters)
        async with resources.sessionmaker() as session:
            return [task.id for task in await repository.list_tasks(session=session, **args)]

    assert await listed() == newest_first
    assert await listed(limit=2) == newest_first[:2]
    completed = [echoes[1], echoes[0], sleeps[2], sleeps[1]]
    assert await listed(status=TaskStatus.COMPLETED) == sorted(completed, reverse=True)
    assert await listed(kind="echo") == echoes[::-1]
    assert await listed(kind="sleep", status=TaskStatus.PENDING) == [sleeps[0]]
    assert await listed(kind="nothing") == []

    paged: list[uuid.UUID] = []
    while page := await listed(limit=2, before_id=paged[-1] if paged else None):
        paged += page
    assert paged == newest_first
    assert await listed(kind="echo", before_id=echoes[2]) == [echoes[1], echoes[0]]


async def test_every_api_statement_sees_only_the_owner_it_is_given(
    resources: Resources, db: asyncpg.Connection
) -> None:
    """owner=None is every owner (an admin); an owner sees and changes its own tasks only."""
    mine = [new_task(n, owner="a") for n in range(2)]
    theirs = [new_task(n, owner="b") for n in range(2)]
    async with connection(resources) as conn:
        await repository.insert_tasks(conn=conn, tasks=[*mine, *theirs])
        await conn.execute("UPDATE tasks SET status = 'failed' WHERE owner = 'b'")
    a_pending, b_failed = mine[0].id, theirs[0].id
    async with resources.sessionmaker() as session:
        get = repository.get_task
        assert await get(session=session, task_id=b_failed, owner="a") is None
        assert await get(session=session, task_id=b_failed, owner="b") is not None
        assert await get(session=session, task_id=b_failed, owner=None) is not None
        listed = await repository.list_tasks(
            session=session, status=None, kind=None, before_id=None, limit=50, owner="a"
        )
        assert {task.id for task in listed} == {task.id for task in mine}
        assert (
            await repository.cancel_pending(session=session, task_id=a_pending, owner="b") is None
        )
        assert (
            await repository.requeue_finished(session=session, task_id=b_failed, owner="a") is None
        )
        assert (
            await repository.request_cancel(session=session, task_id=a_pending, owner="b") is None
        )
    assert await db.fetchval("SELECT status FROM tasks WHERE id = $1", a_pending) == "pending"
    assert await db.fetchval("SELECT status FROM tasks WHERE id = $1", b_failed) == "failed"
    async with connection(resources) as conn:
        counts = await repository.owner_queue_counts(conn=conn, owner="a")
    assert [(r["queue"], r["pending"], r["processing"]) for r in counts] == [("default", 2, 0)]


async def test_cancel_pending_touches_only_pending_tasks(
    resources: Resources, db: asyncpg.Connection
) -> None:
    pending, claimed, done = await add_tasks(resources, 3)
    await claim(resources, [claimed], "w1")
    await db.execute("UPDATE tasks SET status = 'completed' WHERE id = $1", done)
    async with resources.sessionmaker() as session:
        canceled = await repository.cancel_pending(session=session, task_id=pending, owner=None)
        assert canceled is not None and canceled.status == "canceled"
        for task_id in (pending, claimed, done, uuid7()):
            assert (
                await repository.cancel_pending(session=session, task_id=task_id, owner=None)
                is None
            )
        await session.commit()
    assert (await row(db, pending))["finished_at"] is not None
    assert (await row(db, claimed))["status"] == "processing"
    assert (await row(db, done))["status"] == "completed"


async def test_claim_takes_pending_tasks_once_and_skips_the_rest(
    resources: Resources, db: asyncpg.Connection
) -> None:
    first, second, canceled = await add_tasks(resources, 3)
    await db.execute("UPDATE tasks SET status = 'canceled' WHERE id = $1", canceled)
    ids = [first, second, first, canceled, uuid7()]
    got = await claim(resources, ids, "worker-a", lease_s=45)
    again = await claim(resources, ids, "worker-b", lease_s=45)
    assert sorted(task.id for task in got) == sorted([first, second])
    assert again == []
    assert all(task.attempt == 1 and task.kind == "echo" for task in got)
    for task_id in (first, second):
        claimed = await db.fetchrow(
            "SELECT *, lease_expires_at - started_at AS lease, now() - started_at AS age"
            " FROM tasks WHERE id = $1",
            task_id,
        )
        assert claimed["status"] == "processing" and claimed["attempts"] == 1
        assert claimed["worker_id"] == "worker-a"
        assert claimed["lease"].total_seconds() == pytest.approx(45)
        assert 0 <= claimed["age"].total_seconds() < 30
    assert (await row(db, canceled))["status"] == "canceled"


async def test_a_claim_of_one_id_takes_it_once_and_skips_what_is_not_pending(
    resources: Resources, db: asyncpg.Connection
) -> None:
    """One id goes through a statement of its own; it keeps the claim's rules."""
    pending, canceled = await add_tasks(resources, 2)
    await db.execute("UPDATE tasks SET status = 'canceled' WHERE id = $1", canceled)
    got = await claim(resources, [pending], "worker-a", lease_s=45)
    assert [(task.id, task.attempt, task.kind) for task in got] == [(pending, 1, "echo")]
    for task_id in (pending, canceled, uuid7()):
        assert await claim(resources, [task_id], "worker-b", lease_s=45) == []
    claimed = await row(db, pending)
    assert (claimed["status"], claimed["worker_id"], claimed["attempts"]) == (
        "processing", "worker-a", 1,
    )  # fmt: skip
    assert (await row(db, canceled))["status"] == "canceled"


@pytest.mark.parametrize("mode", ["off", "on"])
async def test_a_claims_synchronous_commit_lasts_for_its_own_transaction_only(
    resources: Resources, db: asyncpg.Connection, mode: str
) -> None:
    """CLAIM_SYNCHRONOUS_COMMIT applies to the claim alone: the connection goes
    back to the pool (or PgBouncer's server connection to its next client) as it was."""
    first, second = await add_tasks(resources, 2)
    async with connection(resources) as conn:
        before = await conn.fetchval("SHOW synchronous_commit")
        async with conn.transaction():
            claimed = await repository.claim(
                conn=conn, ids=[first], worker_id="w", lease_s=60, synchronous_commit=mode
            )
            during = await conn.fetchval("SHOW synchronous_commit")
        again = await repository.claim(
            conn=conn, ids=[second], worker_id="w", lease_s=60, synchronous_commit=mode
        )
        after = await conn.fetchval("SHOW synchronous_commit")
    assert [task.id for task in claimed + again] == [first, second]
    assert (before, during, after) == ("on", mode, "on")
    assert [(await row(db, task_id))["status"] for task_id in (first, second)] == [
        "processing",
        "processing",
    ]


async def test_finish_records_outcomes_of_the_current_attempt_only(
    resources: Resources, db: asyncpg.Connection
) -> None:
    done, broken, lost = await add_tasks(resources, 3)
    await db.execute("UPDATE tasks SET max_attempts = 1 WHERE id = $1", broken)
    await claim(resources, [done, broken, lost], "w1")
    # w1 loses the lease of `lost`; w2 reclaims it as attempt 2.
    await db.execute(
        "UPDATE tasks SET lease_expires_at = now() - interval '1 s' WHERE id = $1", lost
    )
    async with connection(resources) as conn:
        assert await recovered_ids(conn, limit=10) == [lost]
    assert [task.attempt for task in await claim(resources, [lost], "w2")] == [2]

    async with connection(resources) as conn:
        written = await repository.finish(
            conn=conn,
            worker_id="w1",
            outcomes=[
                Outcome(done, 1, TaskStatus.COMPLETED, result_json='{"ok": true}'),
                Outcome(broken, 1, TaskStatus.FAILED, error="ValueError: bad"),
                Outcome(lost, 1, TaskStatus.COMPLETED, result_json='"stale"'),
                Outcome(lost, 2, TaskStatus.COMPLETED, result_json='"not w1"'),
            ],
        )
        assert {(r.task_id, r.status) for r in written} == {
            (done, "completed"),
            (broken, "failed"),
        }
        wrong_attempt = Outcome(lost, 1, TaskStatus.FAILED, error="old attempt")
        assert await repository.finish(conn=conn, worker_id="w2", outcomes=[wrong_attempt]) == []
        current = Outcome(lost, 2, TaskStatus.COMPLETED, result_json='"w2"')
        recorded = await repository.finish(conn=conn, worker_id="w2", outcomes=[current])
        assert [r.task_id for r in recorded] == [lost]

    ok, bad, last = [await row(db, task_id) for task_id in (done, broken, lost)]
    assert (ok["status"], json.loads(ok["result"]), ok["error"]) == (
        "completed",
        {"ok": True},
        None,
    )
    assert (bad["status"], bad["result"], bad["error"]) == ("failed", None, "ValueError: bad")
    assert (last["status"], json.loads(last["result"]), last["attempts"]) == ("completed", "w2", 2)
    for record in (ok, bad, last):
        assert record["finished_at"] is not None and record["lease_expires_at"] is None


async def recovered_ids(conn: Any, *, limit: int) -> list[uuid.UUID]:
    """Tasks recovered from expired leases that went back to pending."""
    recovered = await repository.recover_expired(conn=conn, limit=limit)
    return [r.task_id for r in recovered if r.status == "pending"]


async def test_release_returns_only_this_workers_tasks_to_pending(
    resources: Resources, db: asyncpg.Connection
) -> None:
    mine_a, mine_b, theirs = await add_tasks(resources, 3)
    await claim(resources, [mine_a, mine_b], "w1")
    await claim(resources, [theirs], "w2")
    async with connection(resources) as conn:
        released = await repository.release(conn=conn, ids=[mine_a, mine_b, theirs], worker_id="w1")
    assert sorted(r.task_id for r in released) == sorted([mine_a, mine_b])
    assert {r.status for r in released} == {"pending"}
    for task_id in (mine_a, mine_b):
        back = await row(db, task_id)
        assert (back["status"], back["attempts"], back["worker_id"]) == ("pending", 0, None)
        assert back["started_at"] is None and back["lease_expires_at"] is None
    other = await row(db, theirs)
    assert (other["status"], other["attempts"], other["worker_id"]) == ("processing", 1, "w2")


async def test_extend_leases_renews_only_held_unexpired_leases_of_this_worker(
    resources: Resources, db: asyncpg.Connection
) -> None:
    mine, finished, theirs, expired, dropped = await add_tasks(resources, 5)
    await claim(resources, [mine, finished, expired, dropped], "w1", lease_s=5)
    await claim(resources, [theirs], "w2", lease_s=5)
    await db.execute(
        "UPDATE tasks SET lease_expires_at = now() - interval '1 s', cancel_requested = true"
        " WHERE id = $1",
        expired,
    )
    await db.execute("UPDATE tasks SET cancel_requested = true WHERE id = $1", mine)
    async with connection(resources) as conn:
        outcome = Outcome(finished, 1, TaskStatus.COMPLETED, result_json="null")
        await repository.finish(conn=conn, outcomes=[outcome], worker_id="w1")
        renewal = await repository.extend_leases(
            conn=conn, worker_id="w1", ids=[mine, finished, theirs, expired], lease_s=600
        )
    # `dropped` is no longer held by w1, `theirs` is w2's, `expired` may be anyone's now.
    assert renewal.renewed == {mine}
    assert renewal.cancel_requested == [mine]
    ahead = "SELECT extract(epoch FROM lease_expires_at - now()) FROM tasks WHERE id = $1"
    assert await db.fetchval(ahead, mine) > 500
    for task_id in (theirs, dropped):
        assert await db.fetchval(ahead, task_id) < 10
    assert await db.fetchval(ahead, expired) < 0
    assert (await row(db, finished))["lease_expires_at"] is None


async def test_recover_expired_requeues_or_fails_by_attempts(
    resources: Resources, db: asyncpg.Connection
) -> None:
    retry, exhausted, alive = await add_tasks(resources, 3)
    await db.execute("UPDATE tasks SET max_attempts = 1 WHERE id = $1", exhausted)
    await claim(resources, [retry, exhausted], "dead-worker")
    await claim(resources, [alive], "live-worker")
    await db.execute(
        "UPDATE tasks SET lease_expires_at = now() - interval '1 s' WHERE id = ANY($1)",
        [retry, exhausted],
    )
    async with connection(resources) as conn:
        assert await recovered_ids(conn, limit=100) == [retry]
        assert await recovered_ids(conn, limit=100) == []
    again, lost, running = [await row(db, task_id) for task_id in (retry, exhausted, alive)]
    assert (again["status"], again["worker_id"], again["finished_at"]) == ("pending", None, None)
    assert lost["status"] == "failed" and lost["finished_at"] is not None
    assert lost["error"].startswith("worker lost") and "dead-worker" in lost["error"]
    assert (running["status"], running["worker_id"]) == ("processing", "live-worker")


async def test_concurrent_recovery_recovers_each_expired_task_once(
    resources: Resources, db: asyncpg.Connection
) -> None:
    expired = await add_tasks(resources, 200)
    await db.execute("UPDATE tasks SET max_attempts = 3")
    await claim(resources, expired, "dead-worker")
    await db.execute("UPDATE tasks SET lease_expires_at = now() - interval '1 s'")

    async def sweep() -> list[uuid.UUID]:
        found: list[uuid.UUID] = []
        async with connection(resources) as conn:
            while batch := await recovered_ids(conn, limit=15):
                found.extend(batch)
        return found

    results = await asyncio.gather(*(sweep() for _ in range(5)))
    recovered = [task_id for result in results for task_id in result]
    assert len(recovered) == len(expired)
    assert sorted(recovered) == sorted(expired)
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'pending'") == 200
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE attempts <> 1") == 0


async def test_a_kind_limit_counts_the_claims_committed_while_it_waited(
    resources: Resources, db: asyncpg.Connection
) -> None:
    first = await add_tasks(resources, 2, kind="report")
    second = await add_tasks(resources, 2, kind="report")
    limits = {"report": 2}
    async with connection(resources) as holder, connection(resources) as waiter:
        async with holder.transaction():
            taken, _ = await repository.claim_limited(
                conn=holder, ids=first, worker_id="w1", lease_s=60, limits=limits
            )
            assert len(taken) == 2
            waiting = asyncio.create_task(
                repository.claim_limited(
                    conn=waiter, ids=second, worker_id="w2", lease_s=60, limits=limits
                )
            )
            deadline = asyncio.get_running_loop().time() + 10
            while not await db.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ):
                assert asyncio.get_running_loop().time() < deadline, "the second claim never waited"
                await asyncio.sleep(0.01)
        claimed, no_slot = await waiting
    assert claimed == [], "the second worker took slots the first had just filled"
    assert sorted(bell.id for bell in no_slot) == sorted(second)


async def test_pending_chunks_walk_every_pending_task_in_take_order(
    resources: Resources, db: asyncpg.Connection
) -> None:
    ids = await add_tasks(resources, 12)
    # Queues and priorities out of creation order; a few rows that are not stale.
    await db.execute(
        "UPDATE tasks SET queue = CASE WHEN n % 2 = 0 THEN 'b' ELSE 'a' END, priority = n % 3,"
        " updated_at = now() - interval '60 s'"
        " FROM unnest($1::uuid[]) WITH ORDINALITY AS o(id, n) WHERE tasks.id = o.id",
        ids,
    )
    fresh, later, done, running = ids[0], ids[1], ids[2], ids[3]
    await db.execute("UPDATE tasks SET updated_at = now() WHERE id = $1", fresh)
    await db.execute("UPDATE tasks SET run_at = now() + interval '1 hour' WHERE id = $1", later)
    await db.execute("UPDATE tasks SET status = 'canceled' WHERE id = $1", done)
    await db.execute("UPDATE tasks SET status = 'processing' WHERE id = $1", running)
    expected = [
        r["id"]
        for r in await db.fetch(
            "SELECT id FROM tasks WHERE status = 'pending' ORDER BY queue, priority, run_at, id"
        )
    ]

    walked, stale, cursor = [], [], None
    for _ in range(10):
        async with connection(resources) as conn:
            chunk = await repository.pending_chunk(conn=conn, after=cursor, grace_s=30, limit=3)
        walked.append(chunk.rows)
        stale += [bell.id for bell in chunk.stale]
        cursor = repository.PendingCursor.decode(chunk.next.encode()) if chunk.next else None
        if cursor is None:
            break
    assert sum(walked) == len(expected) == 10
    # Every pending task once, in the order workers take them; only due, untouched ones stale.
    assert stale == [task_id for task_id in expected if task_id not in (fresh, later)]
    assert walked == [3, 3, 3, 1]


async def test_a_cursor_that_is_not_ours_starts_the_walk_over() -> None:
    for text in (None, "", "garbage", "[1, 2]", '["q", "x", "2026-01-01", "nope"]'):
        assert repository.PendingCursor.decode(text) is None


async def test_cancel_and_claim_race_has_exactly_one_winner_per_task(
    client: Any, resources: Resources, db: asyncpg.Connection
) -> None:
    ids = []
    for number in range(200):
        response = await client.post("/tasks", json={"message": f"race {number}"})
        assert response.status_code == 201, response.text
        ids.append(uuid.UUID(response.json()["id"]))

    answers: dict[uuid.UUID, int] = {}
    claimed: list[uuid.UUID] = []
    cancel_order = random.sample(ids, len(ids))
    claim_order = random.sample(ids, len(ids))
    batches = [claim_order[start : start + 10] for start in range(0, len(ids), 10)]
    gate = asyncio.Semaphore(10)  # the API's pool holds 10 connections

    async def cancel(task_id: uuid.UUID) -> None:
        async with gate:
            response = await client.patch(f"/tasks/{task_id}", json={"status": "canceled"})
        answers[task_id] = response.status_code

    async def claimer(name: str) -> None:
        async with connection(resources) as conn:
            while batches:
                batch = batches.pop()
                got = await repository.claim(conn=conn, ids=batch, worker_id=name, lease_s=60)
                claimed.extend(task.id for task in got)
                await asyncio.sleep(0)

    jobs = [cancel(task_id) for task_id in cancel_order]
    jobs += [claimer(f"w{number}") for number in range(4)]
    random.shuffle(jobs)
    await asyncio.gather(*jobs)

    claims = Counter(claimed)
    query = "SELECT id, status, attempts, cancel_requested FROM tasks"
    rows = {r["id"]: r for r in await db.fetch(query)}
    canceled = [task_id for task_id in ids if rows[task_id]["status"] == "canceled"]
    processing = [task_id for task_id in ids if rows[task_id]["status"] == "processing"]
    assert len(canceled) + len(processing) == 200, Counter(r["status"] for r in rows.values())
    for task_id in canceled:
        assert answers[task_id] == 200 and claims[task_id] == 0, task_id
    for task_id in processing:
        # Claimed first: the cancel is accepted (202) and left to the worker.
        assert answers[task_id] == 202 and claims[task_id] == 1, task_id
        assert rows[task_id]["attempts"] == 1 and rows[task_id]["cancel_requested"]
    assert len(claimed) == len(processing)


async def test_database_rejects_an_unknown_status(
    resources: Resources, db: asyncpg.Connection
) -> None:
    await add_tasks(resources, 1)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE tasks SET status = 'bogus'")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE tasks SET attempts = -1")


def plan_nodes(plan: dict[str, Any]) -> list[str]:
    return [plan["Node Type"], *(n for child in plan.get("Plans", []) for n in plan_nodes(child))]


def sorted_rows(plan: dict[str, Any]) -> list[int]:
    """The estimated number of rows each Sort node of the plan sorts."""
    own = [int(plan["Plans"][0]["Plan Rows"])] if plan["Node Type"] == "Sort" else []
    return [*own, *(n for child in plan.get("Plans", []) for n in sorted_rows(child))]


def page_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The node that picks the page's ids: the first Limit in the plan."""
    if plan["Node Type"] == "Limit":
        return plan
    return next(p for child in plan.get("Plans", []) if (p := page_plan(child)) is not None)


async def test_list_queries_use_an_index_on_a_large_table(
    resources: Resources, db: asyncpg.Connection
) -> None:
    # 50k finished rows, a fifth of them a tenant's; 'failed' and 'sleep' are
    # rare, so a filter on them only stays cheap when an index serves both the
    # filter and the order.
    await db.execute(
        "INSERT INTO tasks (id, kind, message, status, owner)"
        " SELECT gen_random_uuid(),"
        "        CASE WHEN i % 250 IN (0, 1) THEN 'sleep' ELSE 'echo' END, 'x',"
        "        CASE WHEN i % 250 = 0 THEN 'failed' ELSE 'completed' END,"
        "        CASE WHEN i % 5 = 0 THEN 'acme' END"
        "   FROM generate_series(1, 50000) AS i"
    )
    await db.execute("ANALYZE tasks")
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        captured.append((statement, params))

    done, failed = TaskStatus.COMPLETED, TaskStatus.FAILED
    filters = [(done, None, None), (failed, None, None), (None, "echo", None)]
    filters += [(None, "sleep", None), (done, "echo", None), (failed, "sleep", None)]
    filters += [(None, None, None), (None, None, "acme"), (failed, None, "acme")]
    filters += [(None, "sleep", "acme")]
    event.listen(resources.engine.sync_engine, "before_cursor_execute", capture)
    try:
        for status, kind, owner in filters:
            captured.clear()
            async with resources.sessionmaker() as session:
                found = await repository.list_tasks(
                    session=session, status=status, kind=kind, before_id=None, limit=51, owner=owner
                )
            assert len(found) == 51
            statement, params = next(c for c in captured if "FROM tasks" in c[0])
            explained = await db.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *params)
            plan = json.loads(explained)[0]["Plan"]
            nodes, page = plan_nodes(plan), plan_nodes(page_plan(plan))
            # The page's ids come from indexes in order (a kind or an owner alone:
            # status by status, merged), and their rows by primary key: never a
            # scan of the table, and no sort of more than a handful of rows.
            where = (status, kind, owner, nodes)
            assert "Seq Scan" not in nodes, where
            assert {"Index Scan", "Index Only Scan"} & set(page), where
            assert all(rows <= 60 for rows in sorted_rows(page_plan(plan))), where
    finally:
        event.remove(resources.engine.sync_engine, "before_cursor_execute", capture)


async def test_a_tenants_queue_counts_read_an_index_that_unowned_tasks_stay_out_of(
    db: asyncpg.Connection,
) -> None:
    """GET /queues of one tenant counts from ix_tasks_active_owner, even with the
    generic plan a prepared statement settles on; the 20,000 active tasks without
    an owner (every task under AUTH=none) wrote no entry into it."""
    await db.execute(
        "INSERT INTO tasks (id, kind, message, status, owner)"
        " SELECT gen_random_uuid(), 'echo', 'x',"
        "        CASE WHEN i % 3 = 0 THEN 'completed' ELSE 'pending' END,"
        "        CASE WHEN i % 100 = 1 THEN 'acme' END"
        "   FROM generate_series(1, 30000) AS i"
    )
    await db.execute("ANALYZE tasks")
    counts = await repository.owner_queue_counts(conn=db, owner="acme")
    assert [(r["queue"], r["pending"], r["processing"]) for r in counts] == [("default", 200, 0)]
    await db.execute("SET plan_cache_mode = force_generic_plan")
    statement = await db.prepare(f"EXPLAIN (FORMAT JSON) {api_statements._OWNER_QUEUE_COUNTS}")
    nodes = json.dumps(json.loads(await statement.fetchval("acme")))
    assert '"Index Name": "ix_tasks_active_owner"' in nodes, nodes
    assert "Seq Scan" not in nodes, nodes
    # 200 entries fit in two pages (the metapage and a leaf); an entry for every
    # active task took 19, deduplicated.
    pages = await db.fetchval("SELECT pg_relation_size('ix_tasks_active_owner') / 8192")
    assert pages <= 4, pages


async def test_claims_and_outcomes_look_ids_up_by_primary_key_whatever_the_statistics_say(
    db: asyncpg.Connection,
) -> None:
    """A long history analyzed while nothing was pending or running, then a
    burst: the statistics say no task is pending or running, and neither a claim
    nor an outcome may scan them all."""
    await db.execute(
        "INSERT INTO tasks (id, kind, message, status)"
        " SELECT gen_random_uuid(), 'echo', 'x', 'completed' FROM generate_series(1, 50000)"
    )
    await db.execute("ANALYZE tasks")
    burst = [uuid7() for _ in range(5000)]
    await db.execute(
        "INSERT INTO tasks (id, kind, message) SELECT unnest($1::uuid[]), 'echo', 'x'", burst
    )
    async with db.transaction():
        claimed = await repository.claim(conn=db, ids=burst[:10], worker_id="w", lease_s=60)
        assert len(claimed) == 10
        claim_plan = await db.fetchval(
            f"EXPLAIN (FORMAT JSON) {claims._CLAIM}", burst[10:20], "w", 60.0, [], "off"
        )
        # One id has a statement of its own; its plan is made once, generic.
        claimed = await repository.claim(conn=db, ids=burst[19:20], worker_id="w", lease_s=60)
        assert [task.id for task in claimed] == burst[19:20]
        await db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        one_statement = await db.prepare(f"EXPLAIN (FORMAT JSON) {claims._CLAIM_ONE}")
        claim_one_plan = await one_statement.fetchval(burst[18], "w", 60.0, [], "off")
        await db.execute("SET LOCAL plan_cache_mode = auto")
        await db.execute(
            "UPDATE tasks SET status = 'processing', worker_id = 'w', attempts = 1"
            " WHERE id = ANY($1::uuid[])",
            burst[20:],
        )
        ten = burst[20:30]
        finish_plan = await db.fetchval(
            f"EXPLAIN (FORMAT JSON) {claims._FINISH}",
            ten, [1] * 10, ["completed"] * 10, [None] * 10, [None] * 10, [None] * 10, "w",
        )  # fmt: skip
    for explained in (claim_plan, claim_one_plan, finish_plan):
        nodes = plan_nodes(json.loads(explained)[0]["Plan"])
        index_names = re.findall(r'"Index Name": "(\w+)"', explained)
        assert index_names == ["pk_tasks"], (index_names, nodes)


async def test_purge_finished_deletes_only_old_finished_tasks(
    resources: Resources, db: asyncpg.Connection
) -> None:
    old_done, old_pending, second_done = await add_tasks(resources, 3)
    await db.execute(
        "UPDATE tasks SET status = 'completed', finished_at = now() WHERE id = ANY($1)",
        [old_done, second_done],
    )
    cutoff = datetime.now(UTC) + timedelta(seconds=5)  # everything so far counts as old ...
    async with connection(resources) as conn:
        # ... but a cutoff before the ids were made deletes nothing.
        early = cutoff - timedelta(days=1)
        assert await repository.purge_finished(conn=conn, older_than=early, limit=10) == 0
        assert await repository.purge_finished(conn=conn, older_than=cutoff, limit=1) == 1
        assert await repository.purge_finished(conn=conn, older_than=cutoff, limit=10) == 1
    left = {row["id"] for row in await db.fetch("SELECT id FROM tasks")}
    assert left == {old_pending}


EXACT_COUNTS = """
    SELECT queue, priority, count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'processing') AS processing,
           count(*) FILTER (WHERE status = 'pending' AND run_at > now()) AS scheduled
      FROM tasks WHERE status IN ('pending', 'processing') GROUP BY 1, 2 ORDER BY 1, 2
"""


async def counted(resources: Resources) -> list[tuple[Any, ...]]:
    async with connection(resources) as conn:
        rows = await repository.queue_counts(conn=conn)
    return [
        (r["queue"], r["priority"], r["pending"], r["processing"], r["scheduled"]) for r in rows
    ]


async def test_queue_counts_match_the_rows_through_every_kind_of_change(
    resources: Resources, db: asyncpg.Connection
) -> None:
    """Inserts, claims, retries, finishes, releases, cancels, recoveries and
    deletes, with folds in between: the counters always equal a full count."""
    rng = random.Random(7)
    tasks = [
        new_task(n, queue=rng.choice(["a", "b"]), priority=rng.randrange(10)) for n in range(300)
    ]
    later = datetime.now(UTC) + timedelta(hours=1)
    tasks += [new_task(n, queue="a", priority=1, run_at=later) for n in range(20)]
    async with connection(resources) as conn:
        await repository.insert_tasks(conn=conn, tasks=tasks)
    ids = [task.id for task in tasks[:300]]

    async def check() -> None:
        exact = [tuple(row) for row in await db.fetch(EXACT_COUNTS)]
        assert await counted(resources) == exact

    await check()
    claimed = await claim(resources, ids[:200], "w1")
    await check()
    outcomes = [
        Outcome(task.id, task.attempt, rng.choice([TaskStatus.COMPLETED, TaskStatus.FAILED]),
                result_json="null", error="e", retry_in_s=rng.choice([0.0, 3600.0]))
        for task in claimed[:120]
    ]  # fmt: skip
    async with connection(resources) as conn:
        await repository.finish(conn=conn, outcomes=outcomes, worker_id="w1")
        await repository.fold_count_changes(conn=conn)
    await check()
    async with connection(resources) as conn:
        await repository.release(conn=conn, ids=[t.id for t in claimed[120:150]], worker_id="w1")
    await db.execute("UPDATE tasks SET status = 'canceled' WHERE id = ANY($1)", ids[250:270])
    await db.execute(
        "UPDATE tasks SET lease_expires_at = now() - interval '1 s' WHERE worker_id = 'w1'"
    )
    async with connection(resources) as conn:
        await repository.recover_expired(conn=conn, limit=1000)
        await repository.fold_count_changes(conn=conn)
    await check()
    await db.execute("DELETE FROM tasks WHERE id = ANY($1)", ids[270:])
    await db.execute("UPDATE tasks SET queue = 'b', priority = 0 WHERE id = ANY($1)", ids[:50])
    await check()
    async with connection(resources) as conn:
        await repository.fold_count_changes(conn=conn)
        await repository.fold_count_changes(conn=conn)
    await check()
    assert await db.fetchval("SELECT count(*) FROM task_count_changes") == 0
