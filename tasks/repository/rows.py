"""What the repository hands back, and the connection the hot paths use."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tasks.doorbell import Bell
from tasks.models import Task, TaskStatus


# ClaimedTask, Outcome and Recorded are made once per task by the worker; not
# frozen, as a frozen dataclass sets each field through object.__setattr__
# (ClaimedTask: 2.6 µs to make, against 0.4; the three and their Bells came to
# 7 µs of the worker's ~100 µs of CPU per task). Nothing changes one once made.
@dataclass(slots=True)
class ClaimedTask:
    id: uuid.UUID
    kind: str
    message: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    timeout_seconds: float | None
    bell: Bell
    workflow_id: uuid.UUID | None = None
    inputs: dict[str, Any] | None = None
    lease_expires_at: datetime | None = None
    owner: str | None = None

    def log_fields(self) -> dict[str, Any]:
        """What its log lines carry (app/logs.py); never the payload."""
        return {
            "task_id": str(self.id), "kind": self.kind,
            "queue": self.bell.queue, "attempt": self.attempt,
        }  # fmt: skip


@dataclass(slots=True)
class Outcome:
    """How one attempt ended; written back in batches by the worker.

    A failed attempt goes back to pending after `retry_in_s` while attempts
    remain (and no cancel was asked for); the database decides, in the UPDATE.
    A negative `retry_in_s` fails the task now (the handler raised NoRetry).
    """

    task_id: uuid.UUID
    attempt: int
    status: TaskStatus
    result_json: str | None = None
    error: str | None = None
    retry_in_s: float = 0.0
    in_flow: bool = False  # a workflow step: recorded with its workflow's next move
    kind: str = ""  # for log lines about it
    queue: str = ""

    def log_fields(self) -> dict[str, Any]:
        """What its log lines carry (app/logs.py); never the result."""
        fields: dict[str, Any] = {"task_id": str(self.task_id), "attempt": self.attempt}
        return {**fields, "kind": self.kind, "queue": self.queue} if self.kind else fields


@dataclass(slots=True)
class Recorded:
    task_id: uuid.UUID
    status: str
    bell: Bell
    owner: str | None = None
    attempt: int = 0


# Where a row waits in Redis (see tasks/doorbell.py), as five columns.
BELL_COLUMNS = "id, queue, priority + fair_level, extract(epoch FROM run_at)::float8, kind"


def bell_from(row: Any, start: int = 0) -> Bell:
    task_id, queue, rank, ready_at_s, kind = tuple(row)[start : start + 5]
    return Bell(task_id, queue, rank, ready_at_s, kind)


# A changed row as its status, where it waits, its owner and attempts: see recorded_from.
RECORDED_COLUMNS = f"status, {BELL_COLUMNS}, owner, attempts"


def recorded_from(row: Any) -> Recorded:
    return Recorded(row[1], row[0], bell_from(row, 1), row[6], row[7])


def bell_of(task: Task) -> Bell:
    return Bell(
        task.id, task.queue, task.priority + task.fair_level, task.run_at.timestamp(), task.kind
    )


def bell_of_row(row: Any) -> Bell:
    """As bell_of, for a whole row (RETURNING *)."""
    return Bell(
        row["id"], row["queue"], row["priority"] + row["fair_level"],
        row["run_at"].timestamp(), row["kind"],
    )  # fmt: skip


@asynccontextmanager
async def driver_connection(db: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled connection as asyncpg's own; a connection that broke is dropped from the pool."""
    async with db.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        try:
            yield raw
        except BaseException as error:
            if _broken(raw, error):
                await conn.invalidate()
            raise


def _broken(raw: Any, error: BaseException) -> bool:
    return bool(raw.is_closed()) or isinstance(error, asyncpg.exceptions.InternalClientError)


class HeldConnection:
    """One pooled connection kept from one use to the next, for a loop that
    writes one batch at a time (the API's intake, the worker's claims and its
    outcomes): a checkout and a return of the pool per batch cost as much CPU
    as the statement's own client side. A use that fails hands the connection
    back to the pool (dropped if broken); the next use takes a fresh one. Not
    for concurrent uses: asyncpg refuses a second statement in flight."""

    def __init__(self, db: AsyncEngine) -> None:
        self._db = db
        self._conn: AsyncConnection | None = None
        self._raw: Any = None

    @asynccontextmanager
    async def use(self) -> AsyncIterator[Any]:
        if self._conn is None:
            conn = await self._db.connect()
            try:
                self._raw = (await conn.get_raw_connection()).driver_connection
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        raw = self._raw
        try:
            yield raw
        except BaseException as error:
            await self._give_back(broken=_broken(raw, error))
            raise

    async def close(self) -> None:
        """Back to the pool (before the engine is disposed)."""
        await self._give_back(broken=False)

    async def _give_back(self, *, broken: bool) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is None:
            return
        if broken:
            await conn.invalidate()
        await conn.close()


@dataclass(frozen=True, slots=True)
class Renewal:
    renewed: set[uuid.UUID]
    cancel_requested: list[uuid.UUID]
