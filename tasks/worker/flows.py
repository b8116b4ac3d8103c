"""Recording outcomes of workflow steps: the outcome and the workflow's next
move (the next step created, the fan-in counted, the rest canceled) commit in
one transaction, or neither does.

A batch without workflow steps is written as before, in one autocommit
statement, so plain tasks pay nothing for workflows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from tasks import repository
from tasks.doorbell import Doorbell
from tasks.models import TERMINAL_STATUSES
from tasks.repository import Outcome, Recorded
from tasks.worker.hooks import FlowHook

log = logging.getLogger("taskline.worker")

TRANSIENT = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
ATTEMPTS = 5


class FlowRecorder:
    def __init__(self, doorbell: Doorbell, worker_id: str, hook: FlowHook | None) -> None:
        self._doorbell = doorbell
        self._worker_id = worker_id
        self._hook = hook

    async def finish(self, conn: Any, batch: Sequence[Outcome]) -> list[Recorded]:
        if self._hook is None or not any(outcome.in_flow for outcome in batch):
            return await repository.finish(conn=conn, outcomes=batch, worker_id=self._worker_id)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._finish_with_flows(conn, batch)
            except TRANSIENT as error:  # rolled back whole: the same batch may go again
                if attempt == ATTEMPTS:
                    raise
                log.info("recording workflow steps: %s; trying again", error)
        raise AssertionError("unreachable")

    async def _finish_with_flows(self, conn: Any, batch: Sequence[Outcome]) -> list[Recorded]:
        assert self._hook is not None
        flow_ids = {outcome.task_id for outcome in batch if outcome.in_flow}
        async with conn.transaction():
            recorded = await repository.finish(conn=conn, outcomes=batch, worker_id=self._worker_id)
            final = [
                r.task_id
                for r in recorded
                if r.task_id in flow_ids and r.status in TERMINAL_STATUSES
            ]
            created = await self._hook.advance(conn=conn, task_ids=final) if final else []
        try:
            await self._doorbell.ring(created)
        except Exception as error:  # the reconcile rings them after its grace
            log.warning("could not ring %d workflow task(s): %s", len(created), error)
        return recorded
