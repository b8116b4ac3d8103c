"""Claiming what the puller popped: one conditional UPDATE, then the tasks of
KIND_CONCURRENCY kinds while they have a free slot; those without one are set
aside (parked). Ids the claim refused are accounted for."""

from __future__ import annotations

import logging
import uuid
from contextlib import suppress

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from tasks import events, repository
from tasks.doorbell import Bell, Doorbell, Popped
from tasks.repository import ClaimedTask

log = logging.getLogger("taskline.worker")


async def claim_popped(
    popped: list[Popped],
    *,
    held: repository.HeldConnection,
    db: AsyncEngine,
    doorbell: Doorbell,
    publisher: events.Publisher,
    settings: Settings,
    worker_id: str,
) -> list[ClaimedTask]:
    ids = [item.id for item in popped]
    limits = settings.kind_concurrency
    no_slot: list[Bell] = []
    try:
        async with held.use() as conn:
            claimed = await repository.claim(
                conn=conn,
                ids=ids,
                worker_id=worker_id,
                lease_s=settings.worker_lease_s,
                limited_kinds=list(limits),
                synchronous_commit=settings.claim_synchronous_commit,
            )
            if limits and len(claimed) < len(ids):
                more, no_slot = await repository.claim_limited(
                    conn=conn, ids=ids, worker_id=worker_id, lease_s=settings.worker_lease_s,
                    limits=limits, synchronous_commit=settings.claim_synchronous_commit,
                )  # fmt: skip
                claimed += more
        # Set aside until a slot of their kind frees; no worker spins on them.
        await doorbell.park(no_slot)
    except Exception:
        # The ids have left Redis: put them back rather than wait for the reconcile.
        with suppress(Exception):
            await doorbell.put_back(popped)
        raise
    if len(claimed) + len(no_slot) < len(ids):
        taken = {task.id for task in claimed} | {bell.id for bell in no_slot}
        await _refused([task_id for task_id in ids if task_id not in taken], db, publisher)
    return claimed


async def _refused(ids: list[uuid.UUID], db: AsyncEngine, publisher: events.Publisher) -> None:
    """Ids the claim refused: end those past their expires_at now (else the
    sweep does), and say which."""
    try:
        async with repository.driver_connection(db) as conn:
            expired = await repository.expire_ids(conn=conn, ids=ids)
        publisher.publish(events.of_recorded(expired, pending=""))
    except Exception as error:  # the sweep expires them later
        log.warning("could not expire refused task(s): %s", error)
    names = ", ".join(str(task_id) for task_id in ids[:10])
    log.info("skipped %d id(s) not pending (canceled, done, expired, unknown or twice): %s",
             len(ids), names)  # fmt: skip
