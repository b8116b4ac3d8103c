"""The intake's Redis side once a batch is committed: its ring (the doorbells of
its tasks, their `created` events and the refusals counted since the last ring,
in one pipeline), made as its rows are and sent one ring at a time while the
intake goes on; and the refusals counted between rings, sent on their own
when no batch carries them."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from app.lifespan import Resources
from tasks import events, repository, tally
from tasks.doorbell import Bell, Doorbell, Gathered, send_gathered
from tasks.exceptions import RateLimited
from tasks.submissions import Ring

log = logging.getLogger("taskline.api")

REFUSALS_EVERY_S = 1.0


class Ringer:
    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self.answered_s = -math.inf  # monotonic: when Redis last answered the intake
        self._ringing: asyncio.Task[None] | None = None  # the last batch's ring
        # Refusals by reason (tasks/tally.py), sent with the next batch's ring,
        # else within REFUSALS_EVERY_S (refusals known in the API make no batch)
        self.refusals: Counter[str] = Counter()
        self._refusals_runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._refusals_runner = asyncio.create_task(self._send_refusals_loop(), name="refusals")

    async def close(self) -> None:
        """Once the intake has stopped: the last ring lands (bounded by the Redis
        pool's timeouts and retries), the refusals left are sent."""
        if self._refusals_runner is not None:
            self._refusals_runner.cancel()
            await asyncio.gather(self._refusals_runner, return_exceptions=True)
        if self._ringing is not None:
            await asyncio.gather(self._ringing, return_exceptions=True)
        await self.send_refusals()

    def ring(self) -> Ring:
        """A batch's ring, to make as its rows are stored (Ring.add)."""
        return Ring(self._gather)

    async def answer_and_ring(
        self, ring: Ring, rows: list[Any], answer: Callable[[], None]
    ) -> None:
        """The answers go out while Redis works on the ring: sent first, so a
        worker hears of a task no later than its creator; answered after, so a
        batch's creator does not wait for Redis, and neither does the next
        batch (Redis took 0.5-0.8 ms to answer the ring of 1,000 tasks). One
        ring at a time, so that rings and the events they carry land in order."""
        made = ring.made(rows)
        if self._ringing is not None:
            try:  # answered long ago, but for a slow Redis
                await asyncio.shield(self._ringing)
            except asyncio.CancelledError:  # closing: the reconcile rings these
                answer()  # committed is accepted
                raise
        self._ringing = asyncio.create_task(
            self._ring_and_answer(made, len(rows), answer), name="intake-ring"
        )
        await asyncio.sleep(0)  # the ring goes out now

    def count_refusal(self, refusal: Exception) -> None:
        reason = tally.RATE_LIMIT if isinstance(refusal, RateLimited) else tally.QUEUE_FULL
        self.refusals[f"r|{reason}"] += 1

    async def send_refusals(self) -> None:
        refusals, self.refusals = self.refusals, Counter()
        if not refusals:
            return
        try:
            await tally.send(self._resources, refusals)
        except Exception as error:
            log.warning("could not count %d refusal(s): %s", sum(refusals.values()), error)

    async def _send_refusals_loop(self) -> None:
        while True:
            await asyncio.sleep(REFUSALS_EVERY_S)
            await self.send_refusals()

    async def _ring_and_answer(
        self, made: Gathered | None, count: int, answer: Callable[[], None]
    ) -> None:
        try:
            await self._ring(made, count, sent=answer)
        finally:
            answer()  # also when nothing was sent: committed is accepted

    def _gather(self, rows: list[Any], into: Gathered | None = None) -> Gathered | None:
        """The ring of new rows, to send once they are committed: ready tasks rung,
        delayed ones scheduled for their time, their creation announced and the
        refusals counted, in one pipeline (`into`, if given). Never raises: a
        ring that cannot be made is left to the reconcile, as one that cannot be
        sent."""
        if self._resources.settings.fault_skip_push:
            return None
        try:
            ready: list[Bell] = []
            later: list[Bell] = []
            for row in rows:
                bell = repository.bell_of_row(row)
                (later if row["run_at"] > row["created_at"] else ready).append(bell)
            created = events.of_created(rows)
            refusals, self.refusals = self.refusals, Counter()
            return Doorbell(self._resources).gather(
                ready=ready, later=later, also=[events.stage(self._resources, created, refusals)],
                into=into,
            )  # fmt: skip
        except Exception:
            log.exception("could not make the ring of %d task(s); reconcile will", len(rows))
            return into

    async def _ring(self, pipe: Gathered | None, count: int, *, sent: Callable[[], None]) -> None:
        """Send a gathered ring in one round trip; `sent` once it is on its way."""
        try:
            await send_gathered(pipe, sent=sent)
            if pipe is not None:  # nothing sent: Redis vouched for nothing
                self.answered_s = time.monotonic()
        except Exception as error:
            self.answered_s = -math.inf  # the next batch asks Redis first
            # Committed is accepted: the reconcile rings these doorbells when they are due.
            log.warning("%d task(s) committed but not rung (%s); reconcile will", count, error)
