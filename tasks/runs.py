"""The rules of POST /run/{kind}: create a task, wait for it, answer with its result.

The task goes through the same intake as POST /tasks (rate limit, load
shedding, fairness, kind rules), runs on the workers like any task, and the
caller waits for it with a waiter (tasks/waiters.py). A kind listed in
KIND_MAX_BACKLOG is also refused (503) while that many of its tasks are set
aside waiting for a KIND_CONCURRENCY slot; the set-aside list is Redis's, so
the limit is a shedding rule, while PostgreSQL still decides what runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.lifespan import Resources
from auth.caller import Caller
from tasks import service
from tasks.doorbell import Doorbell
from tasks.exceptions import Backlogged, NoSuchKind, RunFailed, RunTimedOut
from tasks.handlers import Registry
from tasks.intake import Intake
from tasks.schemas import TaskCreate
from tasks.waiters import Waiters

ENVELOPE_FIELDS = frozenset(
    {"payload", "priority", "queue", "owner", "timeout_seconds", "max_attempts"}
)


@dataclass(frozen=True, slots=True)
class RunContext:
    intake: Intake
    resources: Resources
    registry: Registry
    waiters: Waiters
    client: str | None
    idempotency_key: str | None
    caller: Caller


def is_envelope(body: Any) -> bool:
    """`{"payload": {...}, "priority": ...}` with nothing else: an envelope; any
    other body is the payload itself."""
    return (
        isinstance(body, dict)
        and isinstance(body.get("payload"), dict)
        and set(body) <= ENVELOPE_FIELDS
    )


async def run(
    context: RunContext, *, kind: str, body: dict[str, Any], envelope: bool, wait_s: float
) -> dict[str, Any]:
    """The completed task's result as {"task_id", "status", "result"}; RunFailed,
    RunTimedOut, or the intake's refusals otherwise."""
    started_s = time.monotonic()
    if context.registry.get(kind) is None:
        raise NoSuchKind(kind, context.registry.kinds())
    await check_backlog(context.resources, kind)
    options = dict(body) if envelope else {"payload": body}
    task = _task(kind, options)
    row, _ = await service.create_task(
        intake=context.intake, resources=context.resources, registry=context.registry,
        body=task, caller=context.caller, idempotency_key=context.idempotency_key,
        client=context.client,
    )  # fmt: skip
    row = await service.wait_final(
        waiters=context.waiters, row=row, timeout_s=wait_s - (time.monotonic() - started_s)
    )
    if row["status"] == "completed":
        return {"task_id": row["id"], "status": "completed", "result": row["result"]}
    if service.is_final(row):
        raise RunFailed(row)
    raise RunTimedOut(row, wait_s)


def _task(kind: str, options: dict[str, Any]) -> TaskCreate:
    try:
        return TaskCreate.model_validate({"message": f"run {kind}", "kind": kind, **options})
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None


async def check_backlog(resources: Resources, kind: str) -> None:
    """Backlogged (503) while KIND_MAX_BACKLOG of this kind wait for a slot."""
    limit = resources.settings.kind_max_backlog.get(kind)
    if limit is None:
        return
    parked = await Doorbell(resources).parked_count(kind)
    if parked >= limit:
        raise Backlogged(kind, parked, limit)
