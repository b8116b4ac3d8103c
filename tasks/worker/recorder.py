"""Writes outcomes back to PostgreSQL in batches: one statement for many tasks.

While one batch is being written the next one gathers, so batches grow with
load and a lone task is written at once. Under load (the last write less than
LINGER_S ago) a batch also waits out the rest of LINGER_S: each statement and
its WAL flush then records several claims' worth of outcomes, which costs
PostgreSQL and the worker less CPU per task. The buffer is bounded: `put`
waits when it is full, which slows handlers down rather than letting memory
grow.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from contextlib import suppress

from app.errors import is_store_error
from app.lifespan import Resources
from app.loops import stop_if_canceled
from tasks import events, repository
from tasks.doorbell import Doorbell
from tasks.models import TaskStatus
from tasks.repository import Outcome
from tasks.worker.backoff import Backoff
from tasks.worker.flows import FlowRecorder
from tasks.worker.hooks import FlowHook

log = logging.getLogger("taskline.worker")

MAX_BATCH = 500
# A drain of no-op tasks, 10 slots, wrote every 3 ms without it: with it, 1,250
# outcome statements for 20,000 tasks instead of 1,900, and PostgreSQL CPU per
# task 0.171 ms against 0.185 (medians of 7 pairs). What it costs: under load, a
# task's outcome is recorded (and its waiters answered) up to 5 ms later.
LINGER_S = 0.005


class Recorder:
    def __init__(
        self,
        resources: Resources,
        worker_id: str,
        *,
        max_pending: int,
        flow_hook: FlowHook | None = None,
        publisher: events.Publisher,
        linger_s: float = LINGER_S,
    ) -> None:
        self._resources = resources
        self._conn = repository.HeldConnection(resources.engine)  # one batch at a time
        self._publisher = publisher
        self._doorbell = Doorbell(resources)
        self._worker_id = worker_id
        self._flows = FlowRecorder(self._doorbell, worker_id, flow_hook)
        self._max_pending = max_pending
        self._linger_s = linger_s
        self._written_at_s = -math.inf
        self._hurry = asyncio.Event()  # draining: no lingering
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._idle = asyncio.Event()
        self._idle.set()

    def try_put(self, outcome: Outcome) -> bool:
        """Hand in an outcome if there is room; no await, so nothing can cancel it."""
        if len(self._pending) >= self._max_pending:
            self._space.clear()
            return False
        self._pending.append(outcome)
        self._idle.clear()
        self._wake.set()
        return True

    async def put(self, outcome: Outcome) -> None:
        """Hand in an outcome, waiting for room (the writes fell behind)."""
        while not self.try_put(outcome):
            await self._space.wait()

    def pending_ids(self) -> list[uuid.UUID]:
        """Tasks whose outcome is waiting to be written (their leases must hold)."""
        return [outcome.task_id for outcome in self._pending]

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every outcome handed in is written; False if time ran out."""
        self._hurry.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Once `run` has stopped: its connection back to the pool."""
        await self._conn.close()

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            stop_if_canceled()
            await self._wake.wait()
            await self._linger()
            self._wake.clear()
            while self._pending:
                stop_if_canceled()
                batch = self._pending[:MAX_BATCH]
                try:
                    await self._write(batch)
                except Exception as error:
                    if not is_store_error(error):
                        raise
                    delay_s = backoff.next_delay_s()
                    log.warning("cannot record outcomes (%s); retrying in %.2fs", error, delay_s)
                    await asyncio.sleep(delay_s)
                    continue
                self._written_at_s = time.monotonic()
                backoff.reset()
                del self._pending[: len(batch)]
                self._space.set()
            self._idle.set()

    async def _linger(self) -> None:
        """Under load, let more outcomes join this batch (see LINGER_S); not once
        the worker drains, nor past a full batch."""
        pause_s = self._written_at_s + self._linger_s - time.monotonic()
        if pause_s <= 0 or self._hurry.is_set() or len(self._pending) >= MAX_BATCH:
            return
        with suppress(TimeoutError):
            async with asyncio.timeout(pause_s):
                await self._hurry.wait()

    async def _write(self, batch: list[Outcome]) -> None:
        async with self._conn.use() as conn:
            recorded = await self._flows.finish(conn, batch)
        self._publisher.publish(events.of_recorded(recorded, pending=events.RETRIED))
        retries = [r.bell for r in recorded if r.status == TaskStatus.PENDING]
        try:
            await self._doorbell.schedule(retries)
            await self._doorbell.slots_freed(r.bell.kind for r in recorded)
        except Exception as error:  # the reconcile rings them once they are due
            log.warning("could not schedule retries or free slots: %s", error)
        if len(recorded) < len(batch):
            written = {r.task_id for r in recorded}
            for outcome in batch:
                if outcome.task_id not in written:
                    log.warning(
                        "outcome dropped: the task is no longer this worker's"
                        " (lease lost or canceled)",
                        extra=outcome.log_fields(),
                    )
