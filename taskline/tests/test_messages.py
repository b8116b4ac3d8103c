"""The message half of taskline.client (publish, lease, ack, nack, extend,
consume), sync and async, against a real `taskline api` process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from taskline.client import AsyncClient, Client, Conflict, LeasedMessage, MessageIn, NotFound
from taskline.tests.conftest import ROOT
from tasks.tests.fixtures import wait_for

COMPLETED = "SELECT count(*) FROM tasks WHERE kind='message' AND status='completed'"


def subscribed_queue(api: str, queue: str = "q", **fields: object) -> str:
    """A topic `t` and `queue` subscribed to it; the queue's id."""
    with httpx.Client(base_url=api) as http:
        assert http.post("/topics", json={"id": "t"}).status_code in (201, 409)
        created = http.post("/queues", json={"id": queue, "topic_id": "t", **fields})
        assert created.status_code == 201, created.text
    return queue


def test_publish_lease_ack_nack_extend(api: str) -> None:
    queue = subscribed_queue(api)
    with Client(api) as taskline:
        one = taskline.publish("t", {"n": 1}, attributes={"k": "v"})
        many = taskline.publish_batch("t", [MessageIn(data=2), {"data": 3}])
        assert [m.queue for m in one.messages] == [queue]
        assert [m.index for m in many.messages] == [0, 1]

        leased = taskline.lease(queue, max_messages=10, wait_seconds=1, visibility_seconds=30)
        assert [m.data for m in leased] == [{"n": 1}, 2, 3]
        assert leased[0].attributes == {"k": "v"} and leased[0].delivery_attempts == 1
        first, second, third = leased

        taskline.ack(first)
        later = taskline.extend(second.id, second.receipt_handle, visibility_seconds=600)
        assert second.lease_expires_at is not None
        assert later.lease_expires_at > second.lease_expires_at
        taskline.nack(second)
        taskline.nack(third, delay_seconds=600)

        again = taskline.lease(queue, max_messages=10, wait_seconds=1)
        assert [(m.id, m.delivery_attempts) for m in again] == [(second.id, 2)]

        with pytest.raises(Conflict) as stale:  # the first delivery of it is over
            taskline.ack(second)
        assert stale.value.status == 409 and "detail" in stale.value.body
        with pytest.raises(Conflict):
            taskline.extend(first, visibility_seconds=10)
        taskline.ack(again[0])  # the new handle holds it
        with pytest.raises(NotFound):
            taskline.lease("no-such-queue")


async def test_async_client_publishes_leases_and_refuses_a_stale_handle(api: str) -> None:
    queue = subscribed_queue(api)
    async with AsyncClient(api) as taskline:
        await taskline.publish("t", "hello")
        [message] = await taskline.lease(queue, wait_seconds=1)
        await taskline.nack(message)
        with pytest.raises(Conflict):
            await taskline.ack(message)
        [again] = await taskline.lease(queue, wait_seconds=1)
        await taskline.ack(again.id, again.receipt_handle)
        assert await taskline.lease(queue) == []


async def test_consume_acks_each_message_once(
    api: str, worker: None, db: asyncpg.Connection
) -> None:
    """The worker brings back the message nacked with a delay."""
    queue = subscribed_queue(api)
    count = 25
    seen: list[uuid.UUID] = []
    stop = threading.Event()

    def handle(message: LeasedMessage) -> None:
        if message.data == 7 and message.delivery_attempts == 1:
            raise RuntimeError("fails once")  # nacked, then leased again
        seen.append(message.id)
        if len(seen) == count:
            stop.set()

    with Client(api) as taskline:
        taskline.publish_batch("t", [{"data": n} for n in range(count)])
        done = taskline.consume(queue, handle, max_messages=10, wait_seconds=1, stop=stop)
    assert (done.acked, done.nacked, done.lost) == (count, 1, 0)
    assert len(set(seen)) == count
    assert await db.fetchval(COMPLETED) == count


async def test_async_consume_extends_a_long_handler(api: str, db: asyncpg.Connection) -> None:
    queue = subscribed_queue(api)
    stop = asyncio.Event()

    async def handle(message: LeasedMessage) -> None:
        first_deadline = message.lease_expires_at

        async def extended() -> bool:
            now_held_until = await db.fetchval(
                "SELECT lease_expires_at FROM tasks WHERE id = $1", message.id
            )
            return bool(first_deadline is not None and now_held_until > first_deadline)

        # Past its first deadline only if extended in the background meanwhile.
        await wait_for(extended, timeout_s=10, what="the lease extended")
        stop.set()

    async with AsyncClient(api) as taskline:
        await taskline.publish("t", "slow")
        done = await taskline.consume(
            queue, handle, wait_seconds=1, visibility_seconds=1.5, stop=stop
        )
    assert (done.acked, done.lost) == (1, 0)
    assert await db.fetchval(COMPLETED) == 1


async def test_sigterm_stops_a_consumer_with_nothing_lost(
    api: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    queue = subscribed_queue(api)
    count = 20
    with Client(api) as taskline:
        taskline.publish_batch("t", [{"data": n} for n in range(count)])
    journal = tmp_path / "journal"
    journal.touch()
    process = subprocess.Popen(
        [sys.executable, "-m", "taskline.tests.consumer_process", api, queue, str(journal)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        async def started() -> bool:
            return "start" in journal.read_text()

        await wait_for(started, timeout_s=20, what="the consumer to start a message")
        process.send_signal(signal.SIGTERM)  # mid-batch: 5 leased, one in hand
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output.decode(errors="replace")
    lines = journal.read_text().split()
    handled = {uuid.UUID(lines[i + 1]) for i in range(0, len(lines), 2) if lines[i] == "done"}
    rows = await db.fetch("SELECT id, status FROM tasks WHERE kind = 'message'")
    by_status: dict[str, set[uuid.UUID]] = {}
    for row in rows:
        by_status.setdefault(row["status"], set()).add(row["id"])
    assert set(by_status) <= {"completed", "pending"}, by_status.keys()  # none held
    assert by_status["completed"] == handled and 0 < len(handled) < count
    assert len(rows) == count
    assert f"acked={len(handled)}".encode() in output
