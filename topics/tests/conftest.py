"""Fixtures of the topics tests: the tasks' real servers and per-test databases,
plus a table of deliveries, the API as a real process, and small helpers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.lifespan import Resources
from tasks.tests.fixtures import ROOT, TEST_HANDLERS, plain_dsn, wait_for
from tasks.worker import maintenance

# Python workers of these tests also handle `message` (see handlers.py).
HANDLERS = f"{TEST_HANDLERS},topics.tests.handlers"

DELIVERIES_DDL = """
CREATE TABLE IF NOT EXISTS deliveries (
    message_id uuid NOT NULL,
    attempt int NOT NULL,
    consumer text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
)
"""


_CONSUMER_LOGS: dict[int, Path] = {}  # pid -> the file its output goes to


@pytest.fixture
async def deliveries(db: asyncpg.Connection) -> asyncpg.Connection:
    """The `deliveries` table: every consumer writes a row per delivery it handles."""
    await db.execute(DELIVERIES_DDL)
    return db


async def create_topic(client: httpx.AsyncClient, topic_id: str) -> dict[str, Any]:
    response = await client.post("/topics", json={"id": topic_id})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_queue(client: httpx.AsyncClient, queue_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/queues", json={"id": queue_id, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def put(client: httpx.AsyncClient, queue_id: str, *data: Any) -> list[str]:
    body = {"messages": [{"data": item} for item in data]}
    response = await client.post(f"/queues/{queue_id}/messages", json=body)
    assert response.status_code == 201, response.text
    return [message["id"] for message in response.json()["messages"]]


async def lease(client: httpx.AsyncClient, queue_id: str, **fields: Any) -> list[dict[str, Any]]:
    response = await client.post(f"/queues/{queue_id}/lease", json=fields)
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


async def settle(
    client: httpx.AsyncClient, message: dict[str, Any], verb: str = "ack", **fields: Any
) -> httpx.Response:
    return await client.post(
        f"/messages/{message['id']}/{verb}",
        json={"receipt_handle": message["receipt_handle"], **fields},
    )


async def expire_and_recover(db: asyncpg.Connection, resources: Resources, *ids: str) -> None:
    """Wait until these leases have expired by PostgreSQL's clock, then run the
    workers' reconcile sweep once (as a worker would within its interval)."""

    async def expired() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND lease_expires_at < now()",
            list(ids),
        )
        return bool(count == len(ids))

    await wait_for(expired, timeout_s=30, what="the leases to expire")
    await maintenance.reconcile_once(resources.engine, resources)


@pytest.fixture
def spawn_consumer(
    database_url: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`python -m topics.tests.consumer` (an HTTP consumer that is only HTTP and
    SQL, no Taskline code) as a real process; killed at the end if still running."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(url: str, queue: str, *args: str) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"consumer-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "topics.tests.consumer", url, queue, *args],
                cwd=ROOT,
                env={**os.environ, "DELIVERIES_DSN": plain_dsn(database_url)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        _CONSUMER_LOGS[process.pid] = log_path
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(20)


def output_of(consumer: subprocess.Popen[bytes]) -> str:
    """What a consumer spawned by `spawn_consumer` has printed so far."""
    return _CONSUMER_LOGS[consumer.pid].read_text(errors="replace")


async def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(process.wait, 30)
