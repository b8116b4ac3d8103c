"""Side loops of the worker: lease heartbeat, reconcile sweep, promotion of
scheduled retries, and the cancel listener."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import is_store_error
from app.lifespan import Resources
from app.loops import stop_if_canceled
from app.redis import open_pubsub
from tasks import events, repository, tally
from tasks.doorbell import Doorbell
from tasks.models import TaskStatus
from tasks.worker.backoff import Backoff

log = logging.getLogger("taskline.worker")

SWEEP_LIMIT = 1_000  # rows per statement of the recovery, expiry and retention sweeps
SWEEP_MAX_BATCHES = 50  # statements of each per sweep: 50,000 rows, then the next sweep
CHECK_BATCH = 2_000  # pending tasks per statement (and per Redis round trip) of the walk
CHECK_MAX = 100_000  # pending tasks the walk looks at per sweep


CancelTasks = Callable[[list[uuid.UUID]], None]
Report = Callable[[], Awaitable[None]]


async def heartbeat(
    db: AsyncEngine,
    *,
    worker_id: str,
    lease_s: float,
    held: Callable[[], list[uuid.UUID]],
    cancel_requested: CancelTasks,
    leases_lost: CancelTasks,
    report: Report | None = None,
) -> None:
    """Extend the leases of the tasks this worker holds, in one statement, every lease/3.

    The answer also names the tasks whose cancel was asked for (in case the
    announcement was missed). A task whose lease could not be renewed in time
    may already be another worker's: stop running it here. Each round first
    calls `report`, which says this worker is alive (tasks/presence.py).
    """
    renewed_at = time.monotonic()
    while True:
        stop_if_canceled()
        if report is not None:
            await _report(report)
        sent_at = time.monotonic()
        ids = held()
        try:
            async with repository.driver_connection(db) as conn:
                renewal = await repository.extend_leases(
                    conn=conn, worker_id=worker_id, ids=ids, lease_s=lease_s
                )
            renewed_at = sent_at
            cancel_requested(renewal.cancel_requested)
            leases_lost([task_id for task_id in ids if task_id not in renewal.renewed])
        except Exception as error:
            if not is_store_error(error):
                raise
            log.warning("heartbeat failed (%s); leases not extended this round", error)
            if time.monotonic() - renewed_at >= lease_s:
                leases_lost(ids)
        await asyncio.sleep(lease_s / 3)


async def _report(report: Report) -> None:
    try:
        await report()
    except Exception as error:
        if not is_store_error(error):
            raise
        log.warning("could not report this worker's heartbeat (%s)", error)


async def reconcile_once(db: AsyncEngine, resources: Resources) -> tuple[int, int]:
    """Recover tasks of dead workers and re-ring lost doorbells. Returns both counts.

    Safe with many workers at once: the recovery is a conditional UPDATE with
    SKIP LOCKED, and a doorbell rung twice only costs a skipped claim.
    """
    settings, doorbell = resources.settings, Doorbell(resources)
    recovered = await recover_dead_workers(db, resources, doorbell)
    await sweep_finished(db, resources, doorbell)
    async with repository.driver_connection(db) as conn:
        await repository.fold_count_changes(conn=conn)
    # A parked task waits for a finished task of its kind; should that signal
    # be missed, try the parked ones again now and then. The claim re-checks.
    for kind, limit in settings.kind_concurrency.items():
        await doorbell.unpark(kind, limit)
    rung = await ring_lost(db, doorbell, grace_s=settings.reconcile_grace_s)
    counts = {f"x|{tally.LEASES_RECOVERED}": recovered, f"x|{tally.RERUNG}": rung}
    await tally.send(resources, {name: n for name, n in counts.items() if n})
    return recovered, rung


async def recover_dead_workers(db: AsyncEngine, resources: Resources, doorbell: Doorbell) -> int:
    """Expired leases back to pending (and rung), in batches until none is left."""
    total = 0
    for _ in range(SWEEP_MAX_BATCHES):
        async with repository.driver_connection(db) as conn:
            recovered = await repository.recover_expired(conn=conn, limit=SWEEP_LIMIT)
        await doorbell.send(
            ready=[r.bell for r in recovered if r.status == TaskStatus.PENDING],
            also=[events.stage(resources, events.of_recorded(recovered, pending=events.RETRIED))],
        )
        await doorbell.slots_freed(r.bell.kind for r in recovered)
        total += len(recovered)
        if len(recovered) < SWEEP_LIMIT:
            break
    if total:
        log.warning("recovered %d task(s) from expired leases", total)
    return total


async def ring_lost(db: AsyncEngine, doorbell: Doorbell, *, grace_s: float) -> int:
    """Walk the pending tasks in the order workers take them, a chunk at a time,
    and ring those whose doorbell is missing; each chunk is rung before the next
    is read, so the workers are fed while the walk goes on.

    A walk covers up to CHECK_MAX tasks per sweep and goes on from there in the
    next sweep (any worker's: the cursor is in Redis), so every pending task is
    looked at within ceil(pending / CHECK_MAX) sweeps, whatever sits before it.
    """
    cursor = repository.PendingCursor.decode(await doorbell.sweep_cursor())
    checked = rung = 0
    while checked < CHECK_MAX:
        async with repository.driver_connection(db) as conn:
            chunk = await repository.pending_chunk(
                conn=conn, after=cursor, grace_s=grace_s, limit=CHECK_BATCH
            )
        checked += chunk.rows
        if chunk.stale:
            found = await doorbell.present(chunk.stale)
            lost = [bell for bell in chunk.stale if bell.id not in found]
            await doorbell.ring(lost)
            rung += len(lost)
        cursor = chunk.next
        if cursor is None:
            break
    await doorbell.save_sweep_cursor(None if cursor is None else cursor.encode())
    if rung:
        log.warning("re-rang the doorbell of %d pending task(s)", rung)
    return rung


async def sweep_finished(db: AsyncEngine, resources: Resources, doorbell: Doorbell) -> None:
    """Expire overdue pending tasks (and take their ids out of Redis, where load
    shedding would count them); delete finished ones past the retention, in batches."""
    retention_days = resources.settings.retention_days
    older_than = datetime.now(UTC) - timedelta(days=retention_days)
    expired: list[repository.Recorded] = []
    purged = 0
    for _ in range(SWEEP_MAX_BATCHES):
        async with repository.driver_connection(db) as conn:
            batch = await repository.expire_overdue(conn=conn, limit=SWEEP_LIMIT)
            deleted = 0
            if retention_days > 0:
                deleted = await repository.purge_finished(
                    conn=conn, older_than=older_than, limit=SWEEP_LIMIT
                )
        await doorbell.forget([r.bell for r in batch])
        await events.publish(resources, events.of_recorded(batch, pending=""))
        expired, purged = expired + batch, purged + deleted
        if len(batch) < SWEEP_LIMIT and deleted < SWEEP_LIMIT:
            break
    if expired or purged:
        log.info(
            "expired %d pending task(s); deleted %d old finished task(s)", len(expired), purged
        )


async def reconcile(db: AsyncEngine, resources: Resources) -> None:
    interval_s = resources.settings.reconcile_interval_s
    lock_ms = max(1, int(interval_s * 900))
    while True:
        stop_if_canceled()
        try:
            # One sweep per interval across the fleet is enough; the lock expires by itself.
            if await resources.redis.set(resources.keys.reconcile_lock, "1", nx=True, px=lock_ms):
                await reconcile_once(db, resources)
        except Exception as error:
            if not is_store_error(error):
                raise
            log.warning("reconcile failed (%s); trying again next round", error)
        await asyncio.sleep(interval_s)


async def promote_scheduled(resources: Resources, *, interval_s: float = 0.25) -> None:
    """Ring scheduled tasks (retries after their backoff) once they are due."""
    backoff = Backoff(base_s=interval_s, cap_s=5.0)
    while True:
        stop_if_canceled()
        try:
            await Doorbell(resources).promote_due(now_s=time.time(), also=resources.settings.queues)
            backoff.reset()
            await asyncio.sleep(interval_s)
        except Exception as error:
            if not is_store_error(error):
                raise
            delay_s = backoff.next_delay_s()
            log.warning("cannot promote scheduled tasks (%s); retrying in %.2fs", error, delay_s)
            await asyncio.sleep(delay_s)


async def listen_for_cancels(resources: Resources, cancel_requested: CancelTasks) -> None:
    """Cancel local handlers as soon as the API announces a cancel."""
    backoff = Backoff()
    while True:
        try:
            async with await open_pubsub(resources.redis) as pubsub:
                await pubsub.subscribe(resources.keys.cancel_channel)
                backoff.reset()
                while True:
                    stop_if_canceled()
                    # A bounded wait rather than listen(): cancel reaches us between reads.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        cancel_requested(_task_ids([message.get("data")]))
        except Exception as error:
            if not is_store_error(error):
                raise
            delay_s = backoff.next_delay_s()
            log.warning("cancel listener lost Redis (%s); retrying in %.2fs", error, delay_s)
            await asyncio.sleep(delay_s)


def _task_ids(values: list[object]) -> list[uuid.UUID]:
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return ids
