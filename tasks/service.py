"""The rules of the task feature: what may be created, what may change, what to ring."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import KindRule, Settings
from app.ids import uuid7
from app.lifespan import Resources
from auth.caller import Caller
from tasks import events, repository
from tasks.doorbell import Doorbell
from tasks.events import FINAL_STATUSES
from tasks.exceptions import (
    InvalidCursor,
    InvalidPayload,
    TaskConflict,
    TaskNotFound,
    UnknownKind,
)
from tasks.handlers import Registry
from tasks.intake import Intake
from tasks.models import Task, TaskStatus
from tasks.schemas import PriorityCounts, QueueOut, TaskCreate
from tasks.submissions import Accepted, NewTask
from tasks.waiters import Waiters

log = logging.getLogger("taskline.api")


async def create_task(
    *,
    intake: Intake,
    resources: Resources,
    registry: Registry,
    body: TaskCreate,
    caller: Caller,
    idempotency_key: str | None = None,
    client: str | None = None,
) -> Accepted:
    """Check the owner, the kind and its payload, then store the task through the
    intake (committed, then rung); answers the stored row. The task belongs to the
    caller's owner; naming another owner is refused (403) unless the key is admin."""
    task = new_task(
        registry=registry, settings=resources.settings, body=body, caller=caller,
        idempotency_key=idempotency_key, client=client,
    )  # fmt: skip
    return await intake.submit(task)


def new_task(
    *,
    registry: Registry,
    settings: Settings,
    body: TaskCreate,
    caller: Caller,
    idempotency_key: str | None,
    client: str | None,
    task_id: uuid.UUID | None = None,
) -> NewTask:
    """The task a body asks for, once its owner, kind and payload pass (else
    OwnerNotAllowed, UnknownKind or InvalidPayload); defaults from the settings.
    `task_id`: an id made already (app.ids.uuid7_many, for many tasks)."""
    owner = caller.owner_for(body.owner)
    check_kind(registry, body.kind, body.payload, settings=settings)
    rule = kind_rule(settings, body.kind)
    # By position, in NewTask's order: by keyword, the dataclass's __init__ took
    # 1.7 µs against 0.5, on every POST and 1,000 times a batch.
    return NewTask(
        task_id or uuid7(),  # id
        body.kind,
        body.message,
        body.payload,
        body.max_attempts or settings.default_max_attempts,
        body.timeout_seconds or settings.default_timeout_s,
        body.not_before(),  # run_at
        body.expiry(),  # expires_at
        idempotency_key,
        body.fingerprint() if idempotency_key else None,  # request_hash
        body.queue or rule.queue or DEFAULT_QUEUE,
        _priority(body.priority, rule.priority),
        owner,
        client,
    )


def check_kind(
    registry: Registry, kind: str, payload: dict[str, Any], *, settings: Settings
) -> None:
    """UnknownKind or InvalidPayload unless a handler of `kind` takes `payload`;
    its payload model's validators see the settings (the `http` kind's allowed hosts)."""
    handler = registry.get(kind)
    if handler is None:
        raise UnknownKind(kind, registry.kinds())
    if handler.payload_model is None:  # any payload (echo)
        return
    problem = handler.check_payload(payload, {"settings": settings})
    if problem is not None:
        raise InvalidPayload(problem)


DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 5
_NO_RULE = KindRule()


def kind_rule(settings: Settings, kind: str) -> KindRule:
    """The KIND_RULES entry for a kind: its exact name, else the first matching pattern."""
    rules = settings.kind_rules
    if not rules:  # the usual case, on every task of a batch
        return _NO_RULE
    if kind in rules:
        return rules[kind]
    return next((rule for pattern, rule in rules.items() if fnmatchcase(kind, pattern)), _NO_RULE)


def _priority(asked: int | None, ruled: int | None) -> int:
    if asked is not None:
        return asked
    return ruled if ruled is not None else DEFAULT_PRIORITY


async def get_task(
    *, waiters: Waiters, task_id: uuid.UUID, wait_s: float | None, owner: str | None
) -> Any:
    """The task's row; with `wait_s`, once it is final or when the wait runs out.
    `owner`: the caller's tenant (None: any); another owner's task is not found,
    before any wait, so a wait tells nothing about it either."""
    if owner is None and wait_s:
        row = await waiters.wait_final(task_id, wait_s)
    else:
        row = await waiters.read(task_id)
        if row is not None and owner is not None and row["owner"] != owner:
            row = None
        if row is not None and wait_s and not is_final(row):
            row = await waiters.wait_final(task_id, wait_s) or row
    if row is None:
        raise TaskNotFound(task_id)
    return row


async def wait_final(*, waiters: Waiters, row: Any, timeout_s: float) -> Any:
    """A row just written, once final or when `timeout_s` runs out (as it is then)."""
    if is_final(row):
        return row
    return await waiters.wait_final(row["id"], max(0.0, timeout_s)) or row


def is_final(row: Any) -> bool:
    return row["status"] in FINAL_STATUSES


async def cancel_task(
    *, session: AsyncSession, resources: Resources, task: Task, owner: str | None
) -> tuple[Task, bool]:
    """Cancel a task; the flag says whether the cancel is still under way.

    Pending: canceled at once, by one conditional UPDATE, so it cannot race a
    claim. Processing: flagged, and its worker is told to cancel the handler.
    `owner`: the caller's tenant (None: any), as for every statement of a request.
    """
    for _ in range(3):  # a task may move between pending and processing meanwhile
        canceled = await repository.cancel_pending(session=session, task_id=task.id, owner=owner)
        if canceled is not None:
            await _forget(resources, canceled)
            await events.publish(resources, [events.of_row(canceled, events.CANCELED)])
            return canceled, False
        flagged = await repository.request_cancel(session=session, task_id=task.id, owner=owner)
        if flagged is not None:
            await _announce_cancel(resources, flagged)
            return flagged, True
        current = await repository.get_task(session=session, task_id=task.id, owner=owner)
        if current is None or current.status != TaskStatus.PENDING:
            break
    if current is not None and current.status == TaskStatus.CANCELED:
        return current, False
    status = current.status if current is not None else task.status
    raise TaskConflict(f"task {task.id} is {status}; a finished task cannot be canceled")


async def _forget(resources: Resources, task: Task) -> None:
    """A canceled task no longer waits: its id leaves Redis, so load shedding does
    not count it. Should Redis fail here, a worker pops and skips the id later."""
    try:
        await Doorbell(resources).forget([repository.bell_of(task)])
    except Exception as error:
        log.warning("could not take the canceled task out of its queue: %s", error,
                    extra=task.log_fields())  # fmt: skip


async def _announce_cancel(resources: Resources, task: Task) -> None:
    try:
        await Doorbell(resources).announce_cancel(task.id)
    except Exception as error:  # the worker's heartbeat sees the flag within lease/3
        log.warning("could not announce the cancel: %s", error, extra=task.log_fields())


async def retry_task(
    *, session: AsyncSession, resources: Resources, task: Task, owner: str | None
) -> Task:
    """Re-drive a failed or canceled task: pending again, with a fresh attempt budget."""
    requeued = await repository.requeue_finished(session=session, task_id=task.id, owner=owner)
    if requeued is None:
        current = await repository.get_task(session=session, task_id=task.id, owner=owner)
        status = current.status if current is not None else task.status
        raise TaskConflict(f"task {task.id} is {status}; only failed or canceled tasks are retried")
    redriven = events.stage(resources, [events.of_row(requeued, events.REDRIVEN)])
    try:
        await Doorbell(resources).send(ready=[repository.bell_of(requeued)], also=[redriven])
    except Exception:
        log.warning("re-queued but its doorbell failed; reconcile will ring it",
                    extra=requeued.log_fields())  # fmt: skip
    return requeued


async def list_tasks(
    *,
    session: AsyncSession,
    status: TaskStatus | None,
    kind: str | None,
    cursor: str | None,
    limit: int,
    owner: str | None,
    queue: str | None = None,
) -> tuple[Sequence[Task], str | None]:
    try:
        before_id = uuid.UUID(cursor) if cursor else None
    except ValueError:
        raise InvalidCursor() from None
    items = await repository.list_tasks(
        session=session, status=status, kind=kind, before_id=before_id, limit=limit + 1,
        owner=owner, queue=queue,
    )  # fmt: skip
    if len(items) > limit:
        return items[:limit], str(items[limit - 1].id)
    return items, None


async def queue_overview(*, resources: Resources, owner: str | None) -> list[QueueOut]:
    """Active tasks per queue and priority (PostgreSQL), and every queue that has
    had tasks (Redis), so an idle queue still shows. For one tenant (`owner`): its
    own active tasks, and only the queues that hold them (and `default`)."""
    async with repository.driver_connection(resources.engine) as conn:
        if owner is not None:
            rows = await repository.owner_queue_counts(conn=conn, owner=owner)
        else:
            rows = await repository.queue_counts(conn=conn)
    names = await Doorbell(resources).known_queues() if owner is None else set()
    by_queue: dict[str, list[Any]] = {name: [] for name in sorted(names | {DEFAULT_QUEUE})}
    for row in rows:
        by_queue.setdefault(row["queue"], []).append(row)
    return [_queue_out(name, by_queue[name]) for name in sorted(by_queue)]


def _queue_out(name: str, rows: list[Any]) -> QueueOut:
    priorities = [
        PriorityCounts(
            priority=row["priority"],
            pending=row["pending"],
            ready=row["pending"] - row["scheduled"],
            scheduled=row["scheduled"],
            processing=row["processing"],
        )
        for row in rows
    ]
    ages = [row["oldest_ready_age_s"] for row in rows if row["oldest_ready_age_s"] is not None]
    return QueueOut(
        name=name,
        pending=sum(p.pending for p in priorities),
        ready=sum(p.ready for p in priorities),
        scheduled=sum(p.scheduled for p in priorities),
        processing=sum(p.processing for p in priorities),
        oldest_ready_age_s=max(ages, default=None),
        priorities=priorities,
    )
