"""Task creation in batches: concurrent POSTs share one admission script, one
INSERT (a COPY from 100 tasks) and one ring of the doorbell.

A request waits until its row is committed, so nothing is acknowledged before
it is durable. While one batch is being written the next one gathers; a lone
request is written at once. One intake per API process, run by the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import replace

from app.errors import StoreUnavailable, is_store_error, store_name
from app.lifespan import Resources
from app.loops import stop_if_canceled
from tasks import limits, repository
from tasks.idempotency import store_tasks
from tasks.ringing import Ringer
from tasks.submissions import (
    Accepted,
    Answers,
    Entry,
    Group,
    Member,
    NewTask,
    Settled,
    Stream,
)

log = logging.getLogger("taskline.api")

MAX_BATCH = 500  # tasks per INSERT; a larger group (POST /tasks/batch) goes alone
# With no limit set, admission decides nothing; it is a PING that finds Redis
# down before anything is written. An answer from Redis this recent (the last
# batch's ring) stands for that PING.
REDIS_VOUCHED_S = 1.0


class Intake:
    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self._conn = repository.HeldConnection(resources.engine)  # one batch at a time
        self._ringer = Ringer(resources)
        # Groups of entries, each written whole: a POST is a group of one, a
        # POST /tasks/batch one group of all the tasks it admits (a stream, if large)
        self._waiting: deque[list[Entry] | Stream] = deque()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._writing: list[Entry] | Stream = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._known_refusals = limits.KnownRefusals()

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="intake")
        self._ringer.start()

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Write what is waiting (bounded), then stop; whoever is left gets a 503."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s)
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        for group in [self._writing, *self._waiting]:
            _fail(group, StoreUnavailable("api", "the API is shutting down"))
        await self._ringer.close()
        await self._conn.close()

    async def submit(self, task: NewTask) -> Accepted:
        """The stored row once committed, and whether this request created it;
        StoreUnavailable if a store is down; RateLimited or Overloaded if refused."""
        refusal = self._known_refusals.refusal(task.client, task.queue)
        if refusal is not None:
            self._ringer.count_refusal(refusal)
            raise refusal
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._enqueue([(task, future)])
        return await future

    async def submit_many(self, tasks: Sequence[NewTask]) -> list[Accepted | Exception]:
        """Each task's outcome, in order: as `submit` would answer it, or the error it
        would raise. They are written together, in one batch of the intake, never
        split across batches: one admission, one statement, one ring. A store that is
        down makes every outcome StoreUnavailable (nothing written)."""
        if not tasks:
            return []
        group = Group(len(tasks))
        entries: list[Entry] = []
        for index, task in enumerate(tasks):
            refusal = self._known_refusals.refusal(task.client, task.queue)
            if refusal is None:
                entries.append((task, Member(group, index)))
            else:
                self._ringer.count_refusal(refusal)
                group.settle(index, refusal)
        if entries:
            self._enqueue(entries)
        await group.all_done
        return [outcome for outcome in group.outcomes if outcome is not None]

    async def submit_slices(
        self, slices: Iterator[Sequence[NewTask]]
    ) -> tuple[list[Accepted | Exception], asyncio.Future[None]]:
        """As submit_many for the tasks of all `slices`, in order, with each slice
        made (pulled) while PostgreSQL copies the one before: one transaction,
        one ring. That needs an admission with nothing to decide (no RATE_LIMIT,
        QUEUE_MAX_PENDING or FAIRNESS=levels); else every slice is made first
        and the tasks go to submit_many. The outcomes come before the COMMIT,
        so that the caller makes its answer while PostgreSQL flushes it, with
        the future to await before answering: the COMMIT's (StoreUnavailable
        if it failed; done once the ring is on its way)."""
        if limits.active(self._resources.settings):
            outcomes = await self.submit_many([task for tasks in slices for task in tasks])
            committed = asyncio.get_running_loop().create_future()
            committed.set_result(None)
            return outcomes, committed
        stream = Stream(slices)
        self._enqueue(stream)
        return await stream.settled, stream.committed

    def _enqueue(self, group: list[Entry] | Stream) -> None:
        self._waiting.append(group)
        self._idle.clear()
        self._wake.set()

    def _next_batch(self) -> list[Entry] | Stream:
        """Whole groups in arrival order, up to MAX_BATCH tasks; a larger group
        or a stream alone."""
        first = self._waiting.popleft()
        if isinstance(first, Stream):
            return first
        batch = list(first)  # the submitter's list stays its own
        while self._waiting:
            group = self._waiting[0]
            if isinstance(group, Stream) or len(batch) + len(group) > MAX_BATCH:
                break
            batch += group
            self._waiting.popleft()
        return batch

    async def _run(self) -> None:
        while True:
            stop_if_canceled()
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                stop_if_canceled()
                self._writing = batch = self._next_batch()
                if isinstance(batch, Stream):
                    await self._write_stream(batch)
                else:
                    await self._write(batch)
                self._writing = []
            self._idle.set()

    async def _write(self, batch: list[Entry]) -> None:
        try:
            # Admission also tells whether Redis is reachable: if not, refuse
            # before writing; the tasks would wait for Redis anyway.
            batch = await self._admit(batch)
            if not batch:
                await self._ringer.send_refusals()
                return
            ring = self._ringer.ring()  # made while a COPY runs
            settled: Settled = {}
            async with self._conn.use() as conn:
                rows = await store_tasks(conn, [task for task, _ in batch], settled, ring.add)
        except Exception as error:
            _fail(batch, _unavailable(error, len(batch)))
            return
        await self._ringer.answer_and_ring(ring, rows, Answers(batch, settled))

    async def _write_stream(self, stream: Stream) -> None:
        """A stream's slices copied in one transaction as they are made; those
        with idempotency keys inserted after them, in it."""
        keyed: list[NewTask] = []
        ring = self._ringer.ring()
        settled: Settled = {}
        try:
            await self._admit([])  # finds Redis down, unless it answered just now
            async with self._conn.use() as conn, conn.transaction():
                rows = await repository.copy_slices(
                    conn=conn, slices=stream.pull(keyed), meanwhile=ring.add
                )
                settled.update((row["id"], (row, True)) for row in rows)
                if keyed:  # inserted, not copied: their ring is made here
                    more = await store_tasks(conn, keyed, settled)
                    ring.add(more)
                    rows += more
                stream.settle(settled)  # its submitter answers while the COMMIT is out
        except Exception as error:
            stream.fail(_unavailable(error, len(stream.tasks)))
            return
        await self._ringer.answer_and_ring(ring, rows, stream.commit)

    async def _admit(self, batch: list[Entry]) -> list[Entry]:
        """Refuse what the rate limit or load shedding refuses; set the fairness
        level of the rest. No round trip when there is nothing to decide and
        Redis answered within REDIS_VOUCHED_S."""
        recent = time.monotonic() - self._ringer.answered_s < REDIS_VOUCHED_S
        if recent and not limits.active(self._resources.settings):
            return batch
        applicants = [
            limits.Applicant(task.id, task.queue, task.owner, task.client) for task, _ in batch
        ]
        decisions = await limits.admit(self._resources, applicants)
        self._ringer.answered_s = time.monotonic()
        admitted = []
        for (task, future), applicant, decision in zip(batch, applicants, decisions, strict=True):
            if isinstance(decision, int):
                if decision != task.fair_level:
                    task = replace(task, fair_level=decision)
                admitted.append((task, future))
                continue
            self._known_refusals.note(applicant, decision)
            self._ringer.count_refusal(decision)
            if not future.done():
                future.set_exception(decision)
        return admitted


def _unavailable(error: Exception, count: int) -> StoreUnavailable:
    if not is_store_error(error):
        log.exception("could not store %d task(s)", count)
    return StoreUnavailable(store_name(error), str(error))


def _fail(group: list[Entry] | Stream, error: StoreUnavailable) -> None:
    if isinstance(group, Stream):
        group.fail(error)
        return
    for _, future in group:
        if not future.done():
            future.set_exception(error)
