"""HTTP consumers: lease, ack, nack, extend, redrive.

A lease is the Python workers' claim (tasks.repository.claim_kinds): one
conditional UPDATE ... WHERE status = 'pending' ... RETURNING, with worker_id
set to the consumer and lease_expires_at to the ack deadline. So a message is
held by one consumer or one worker at a time, and a deadline that passes
brings it back through the reconcile's lease recovery like any task. Ack and
nack are the workers' outcome write (tasks.repository.finish), conditional on
(id, attempt, status 'processing', worker_id) from the receipt handle.

Each request announces its state changes as the workers do (tasks/events.py),
after its commit, in the one pipeline that also rings what it made ready: a
lease `started` (and the consumer's last lease, topics/presence.py), an ack
`completed`, a nack `retried`, `dead_lettered` or `failed`, a redrive
`redriven`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from app.lifespan import Resources
from tasks import events
from tasks import repository as tasks_repository
from tasks.doorbell import Bell, Doorbell, Popped
from tasks.events import Event
from tasks.models import TaskStatus
from tasks.repository import ClaimedTask, Outcome
from topics import presence, repository
from topics.exceptions import MessageNotFound, QueueNotFound, StaleReceipt
from topics.message_schemas import LeasedMessage, LeaseIn
from topics.models import MESSAGE_KIND
from topics.receipts import Delivery, Receipts, ReceiptSigner
from topics.waiting import LongPoll

log = logging.getLogger("taskline.api")

NACKED = "nacked by its consumer"


def _connect(resources: Resources) -> Any:
    return tasks_repository.driver_connection(resources.engine)


async def lease(
    *, resources: Resources, long_poll: LongPoll, receipts: Receipts, queue_id: str, body: LeaseIn
) -> list[LeasedMessage]:
    async with _connect(resources) as conn:
        queue = await repository.get_queue(conn=conn, queue_id=queue_id)
    if queue is None or queue["deleting_at"] is not None:
        raise QueueNotFound(queue_id)
    signer = await receipts.signer()
    worker_id = f"http:{body.consumer}:{secrets.token_hex(6)}"
    visibility_s = body.visibility_seconds or float(queue["ack_deadline_seconds"])
    claimed = await _take(resources, long_poll, queue_id, body, worker_id, visibility_s)
    seen = presence.stage_lease(resources, queue_id, body.consumer, took=bool(claimed))
    announcing = asyncio.ensure_future(
        _send(resources, announced=events.of_claimed(claimed), also=[seen])
    )
    try:
        await asyncio.shield(announcing)
    except asyncio.CancelledError:  # the client hung up: it gets nothing, so keeps nothing
        await announcing
        await _give_back(resources, claimed, worker_id, started=[])
        raise
    return [_leased(task, signer, worker_id) for task in claimed]


async def _take(
    resources: Resources,
    long_poll: LongPoll,
    queue_id: str,
    body: LeaseIn,
    worker_id: str,
    visibility_s: float,
) -> list[ClaimedTask]:
    """Claim what is ready now; else block on the doorbell for up to the wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body.wait_seconds
    doorbell = Doorbell(resources)
    while True:
        popped = await doorbell.pop([queue_id], count=body.max_messages, timeout_s=0)
        remaining_s = deadline - loop.time()
        if not popped and remaining_s > 0:
            popped = await long_poll.pop(queue_id, count=body.max_messages, timeout_s=remaining_s)
        if not popped:
            return []
        claiming = asyncio.ensure_future(_claim(resources, popped, worker_id, visibility_s))
        try:
            claimed, gave_back = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # The client hung up mid-claim: finish it, then give the messages back.
            taken = (await claiming)[0]
            await _give_back(resources, taken, worker_id, started=events.of_claimed(taken))
            raise
        # Only stale ids (acked, expired, deleted): pop again while the wait lasts.
        if claimed or gave_back or loop.time() >= deadline:
            return claimed


async def _claim(
    resources: Resources, popped: list[Popped], worker_id: str, visibility_s: float
) -> tuple[list[ClaimedTask], bool]:
    """Claim the messages among the popped ids; tasks of other kinds go back
    to their place for the Python workers. Says whether any went back."""
    doorbell = Doorbell(resources)
    ids = [item.id for item in popped]
    others: set[uuid.UUID] = set()
    try:
        async with _connect(resources) as conn:
            claimed = await tasks_repository.claim_kinds(
                conn=conn, ids=ids, worker_id=worker_id, lease_s=visibility_s,
                kinds=[MESSAGE_KIND],
                synchronous_commit=resources.settings.claim_synchronous_commit,
            )  # fmt: skip
            if len(claimed) < len(ids):
                taken = {task.id for task in claimed}
                others = await repository.pending_of_other_kinds(
                    conn=conn, ids=[i for i in ids if i not in taken], kind=MESSAGE_KIND
                )
    except Exception:
        with suppress(Exception):  # the ids have left Redis: put them back
            await doorbell.put_back(popped)
        raise
    if others:
        await doorbell.put_back([item for item in popped if item.id in others])
    return claimed, bool(others)


async def _give_back(
    resources: Resources, claimed: list[ClaimedTask], worker_id: str, *, started: list[Event]
) -> None:
    """The workers' give-back: pending again, the delivery not counted, rung,
    and announced (after the claim's `started` events not announced yet)."""
    if not claimed:
        return
    async with _connect(resources) as conn:
        released = await tasks_repository.release(
            conn=conn, ids=[task.id for task in claimed], worker_id=worker_id
        )
    await _send(
        resources,
        ready=[r.bell for r in released if r.status == TaskStatus.PENDING],
        announced=started + events.of_recorded(released, pending=events.RELEASED),
    )


def _leased(task: ClaimedTask, signer: ReceiptSigner, worker_id: str) -> LeasedMessage:
    payload = task.payload if isinstance(task.payload, dict) else {}
    attributes = payload.get("attributes")
    return LeasedMessage(
        id=task.id,
        queue=task.bell.queue,
        data=payload.get("data"),
        attributes=attributes if isinstance(attributes, dict) else {},
        receipt_handle=signer.sign(Delivery(task.id, task.attempt, worker_id)),
        delivery_attempts=task.attempt,
        lease_expires_at=task.lease_expires_at,
        published_at=_published_at(task.id),
    )


def _published_at(message_id: uuid.UUID) -> datetime:
    """From the time-ordered id: a message keeps its id through dead letters and redrives."""
    return datetime.fromtimestamp((message_id.int >> 80) / 1000, UTC)


async def ack(
    *, resources: Resources, receipts: Receipts, message_id: uuid.UUID, handle: str
) -> None:
    delivery = (await receipts.signer()).open(handle, message_id)
    outcome = Outcome(message_id, delivery.attempt, TaskStatus.COMPLETED)
    await _finish(resources, delivery, outcome)


async def nack(
    *,
    resources: Resources,
    receipts: Receipts,
    message_id: uuid.UUID,
    handle: str,
    delay_s: float,
) -> None:
    """Visible again (after `delay_s`); the delivery counts. After the last one
    the message moves to the dead queue (see migration 0010) or ends failed."""
    delivery = (await receipts.signer()).open(handle, message_id)
    outcome = Outcome(
        message_id, delivery.attempt, TaskStatus.FAILED, error=NACKED, retry_in_s=delay_s
    )
    await _finish(resources, delivery, outcome, delay_s=delay_s)


async def _finish(
    resources: Resources, delivery: Delivery, outcome: Outcome, *, delay_s: float = 0
) -> None:
    """Record the outcome, then ring and announce it: a retry after `delay_s`
    is scheduled; a dead letter waits in its dead queue from now."""
    async with _connect(resources) as conn:
        recorded = await tasks_repository.finish(
            conn=conn, outcomes=[outcome], worker_id=delivery.worker_id
        )
        if not recorded:
            await _refuse(conn, delivery.message_id)
    announced = events.of_recorded(recorded, pending=events.RETRIED)
    again = [(r.bell, e.event) for r, e in zip(recorded, announced, strict=True)
             if r.status == TaskStatus.PENDING]  # fmt: skip
    later = delay_s > 0
    await _send(
        resources,
        ready=[bell for bell, event in again if not later or event == events.DEAD_LETTERED],
        later=[bell for bell, event in again if later and event != events.DEAD_LETTERED],
        announced=announced,
    )
    try:  # frees a KIND_CONCURRENCY slot of `message`, if it is limited
        await Doorbell(resources).slots_freed(r.bell.kind for r in recorded)
    except Exception as error:
        log.warning("could not free kind slots (%s); the reconcile will", error)


async def extend(
    *,
    resources: Resources,
    receipts: Receipts,
    message_id: uuid.UUID,
    handle: str,
    visibility_s: float,
) -> Any:
    """The new deadline, `visibility_s` from now."""
    delivery = (await receipts.signer()).open(handle, message_id)
    async with _connect(resources) as conn:
        deadline = await repository.extend_delivery(
            conn=conn,
            message_id=message_id,
            attempt=delivery.attempt,
            worker_id=delivery.worker_id,
            lease_s=visibility_s,
        )
        if deadline is None:
            await _refuse(conn, message_id)
    return deadline


async def _refuse(conn: Any, message_id: uuid.UUID) -> None:
    """The handle was genuine but held nothing: 404 if the message is gone, else 409."""
    if not await repository.message_exists(conn=conn, message_id=message_id):
        raise MessageNotFound(message_id)
    raise StaleReceipt(message_id, "that delivery is over (acked, nacked, or past its deadline)")


async def _send(
    resources: Resources,
    *,
    ready: Sequence[Bell] = (),
    later: Sequence[Bell] = (),
    announced: Sequence[Event] = (),
    also: Sequence[Callable[[Any], None]] = (),
) -> None:
    """Ring, schedule and announce in one round trip. Committed is accepted:
    should Redis fail here, the reconcile rings them (the events are lost)."""
    steps = [events.stage(resources, announced), *also] if announced else list(also)
    try:
        await Doorbell(resources).send(ready=ready, later=later, also=steps)
    except Exception as error:
        log.warning("%d message(s) not rung or announced (%s); reconcile rings them",
                    len(ready) + len(later), error)  # fmt: skip


async def redrive(*, resources: Resources, queue_id: str, limit: int) -> int:
    """Dead letters of the queue (in its dead queue, or failed in it) back to it."""
    async with _connect(resources) as conn, conn.transaction():
        # Locked, so that a DELETE of the queue cannot miss what comes back to it.
        if await repository.lock_queue(conn=conn, queue_id=queue_id) is None:
            raise QueueNotFound(queue_id)
        redriven = await repository.redrive(conn=conn, queue_id=queue_id, limit=limit)
    await _send(
        resources,
        ready=[r.bell for r in redriven],
        announced=events.of_recorded(redriven, pending=events.REDRIVEN),
    )
    return len(redriven)
