"""Waiting for a task to finish, without polling PostgreSQL.

A waiter registers under its task id, then reads the row; the API process's
event feed (tasks/feed.py) wakes it when an event says the task reached a
final status, and it reads the row again, once. Events are hints: the row is
the answer. So a missed event costs no more than time: the feed wakes every
waiter after it (re)connects, and each waiter reads its row at its deadline.

Rows are read in batches: every read asked for while one query runs is made
by the next query (`SELECT ... WHERE id = ANY(...)`), so a thousand waiters
woken together cost a few queries, and no waiter holds a connection while it
waits.

    row = await waiters.wait_final(task_id, timeout_s=30)  # None: no such task
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from app.errors import StoreUnavailable, is_store_error, store_name
from app.lifespan import Resources
from tasks import repository
from tasks.events import FINAL_STATUSES

log = logging.getLogger("taskline.api")

MAX_READ_BATCH = 1000


class Waiters:
    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self._by_task: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._reads: dict[uuid.UUID, list[asyncio.Future[Any]]] = {}
        self._reads_asked = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.on_wait: Callable[[], None] = lambda: None  # set by the feed that wakes us

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read_batches(), name="waiter-reads")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for futures in self._reads.values():
            for future in futures:
                if not future.done():
                    future.set_exception(StoreUnavailable("api", "the API is shutting down"))

    def shutting_down(self) -> None:
        """Every waiter answers now, with its row as it is."""
        self._closing = True
        self.wake_all()

    @property
    def waiting(self) -> int:
        """How many tasks have a waiter."""
        return len(self._by_task)

    async def wait_final(self, task_id: uuid.UUID, timeout_s: float) -> Any | None:
        """The task's row once it is in a final status, or as it is after
        `timeout_s`; None if there is no such task. StoreUnavailable if
        PostgreSQL cannot be read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (0.0 if self._closing else timeout_s)
        woken = asyncio.Event()
        # Registered before the first read: an event after that read wakes us.
        self._by_task.setdefault(task_id, set()).add(woken)
        self.on_wait()  # an idle feed follows the stream from now on
        try:
            row = await self.read(task_id)
            while row is not None and row["status"] not in FINAL_STATUSES:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        await woken.wait()
                except TimeoutError:
                    return await self.read(task_id)  # the deadline: as it is now
                woken.clear()
                row = await self.read(task_id)
                if self._closing:
                    break
            return row
        finally:
            self._forget(task_id, woken)

    def _forget(self, task_id: uuid.UUID, woken: asyncio.Event) -> None:
        found = self._by_task.get(task_id)
        if found is not None:
            found.discard(woken)
            if not found:
                del self._by_task[task_id]

    def wake(self, task_ids: Iterable[uuid.UUID]) -> None:
        """These tasks reached a final status (the feed saw their events)."""
        for task_id in task_ids:
            for woken in self._by_task.get(task_id, ()):
                woken.set()

    def wake_all(self) -> None:
        """Events may have been missed (the feed reconnected): every waiter reads again."""
        for found in self._by_task.values():
            for woken in found:
                woken.set()

    async def read(self, task_id: uuid.UUID) -> Any | None:
        """The task's row, read together with every other read asked for meanwhile."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reads.setdefault(task_id, []).append(future)
        self._reads_asked.set()
        return await future

    async def _read_batches(self) -> None:
        while True:
            await self._reads_asked.wait()
            self._reads_asked.clear()
            while self._reads:
                ids = list(self._reads)[:MAX_READ_BATCH]
                batch = {task_id: self._reads.pop(task_id) for task_id in ids}
                await self._read_batch(batch)

    async def _read_batch(self, batch: dict[uuid.UUID, list[asyncio.Future[Any]]]) -> None:
        try:
            async with repository.driver_connection(self._resources.engine) as conn:
                rows = await repository.tasks_by_ids(conn=conn, ids=list(batch))
        except Exception as error:
            if not is_store_error(error):
                log.exception("could not read %d task(s)", len(batch))
            failure = StoreUnavailable(store_name(error), str(error))
            for futures in batch.values():
                for future in futures:
                    with suppress(asyncio.InvalidStateError):  # its request went away
                        future.set_exception(failure)
            return
        for task_id, futures in batch.items():
            for future in futures:
                with suppress(asyncio.InvalidStateError):
                    future.set_result(rows.get(task_id))
