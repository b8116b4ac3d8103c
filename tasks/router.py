"""HTTP routes of the task feature: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, Security, status

from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES, CallerDep, require
from tasks import service
from tasks.dependencies import (
    ClientDep,
    IntakeDep,
    RegistryDep,
    ResourcesDep,
    SessionDep,
    TaskDep,
)
from tasks.models import Task, TaskStatus
from tasks.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    KIND_PATTERN,
    ErrorOut,
    QueuesOut,
    TaskCreate,
    TaskOut,
    TaskPage,
    TaskPatch,
)

router = APIRouter(prefix="/tasks", tags=["tasks"], responses=AUTH_RESPONSES)
queues_router = APIRouter(
    prefix="/queues",
    tags=["queues"],
    dependencies=[Security(require, scopes=[Scope.QUEUES_READ])],
    responses=AUTH_RESPONSES,
)
WRITE = [Security(require, scopes=[Scope.TASKS_WRITE])]
READ = [Security(require, scopes=[Scope.TASKS_READ])]

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "PostgreSQL or Redis is unreachable; retry later."}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such task."}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    responses={
        200: {"model": TaskOut, "description": "Same Idempotency-Key and body: the first task."},
        422: {"description": "Invalid body, unknown kind, or a reused Idempotency-Key."},
        429: {"model": ErrorOut, "description": "RATE_LIMIT reached; see Retry-After."},
        503: {"model": ErrorOut, "description": "A store is down, or QUEUE_MAX_PENDING reached."},
    },
    summary="Create a task",
    dependencies=WRITE,
)
async def create_task(
    body: TaskCreate,
    response: Response,
    caller: CallerDep,
    intake: IntakeDep,
    resources: ResourcesDep,
    registry: RegistryDep,
    client: ClientDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)
    ] = None,
) -> TaskOut:
    """Store the task (committed in PostgreSQL), then ring the doorbell for a worker.
    With an `Idempotency-Key`, the same key and body within 24 h return the first task.
    The task belongs to the key's owner; only an admin key may name another `owner`."""
    row, created = await service.create_task(
        intake=intake, resources=resources, registry=registry, body=body, caller=caller,
        idempotency_key=idempotency_key, client=client,
    )  # fmt: skip
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/tasks/{row['id']}"
    return TaskOut.model_validate(dict(row))


@router.get(
    "", response_model=TaskPage, responses=_UNAVAILABLE, summary="List tasks", dependencies=READ
)
async def list_tasks(
    session: SessionDep,
    caller: CallerDep,
    status: TaskStatus | None = None,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> TaskPage:
    """Newest first. Pass the `next_cursor` of one page as `cursor` to get the next.
    A key sees its owner's tasks only; an admin key sees every task."""
    items, next_cursor = await service.list_tasks(
        session=session, status=status, kind=kind, cursor=cursor, limit=limit,
        owner=caller.tenant,
    )  # fmt: skip
    return TaskPage(items=[TaskOut.model_validate(item) for item in items], next_cursor=next_cursor)


@router.get(
    "/{task_id}",
    response_model=TaskOut,
    responses={**_NOT_FOUND, **_UNAVAILABLE},
    summary="Get a task",
    dependencies=READ,
)
async def get_task(task: TaskDep) -> Task:
    return task


@router.patch(
    "/{task_id}",
    response_model=TaskOut,
    responses={
        **_NOT_FOUND,
        202: {"model": TaskOut, "description": "Running: its worker was asked to cancel it."},
        409: {"model": ErrorOut, "description": "The task has already finished."},
        **_UNAVAILABLE,
    },
    summary="Cancel a task",
    dependencies=WRITE,
)
async def patch_task(
    body: TaskPatch,
    task: TaskDep,
    caller: CallerDep,
    session: SessionDep,
    resources: ResourcesDep,
    response: Response,
) -> Task:
    """Only `{"status": "canceled"}` is accepted. A pending task is canceled (200); a
    running one is asked to stop (202, `cancel_requested: true`) and ends `canceled`
    once its worker has canceled the handler. Canceling twice is not an error."""
    updated, under_way = await service.cancel_task(
        session=session, resources=resources, task=task, owner=caller.tenant
    )
    if under_way:
        response.status_code = status.HTTP_202_ACCEPTED
    return updated


@router.post(
    "/{task_id}/retry",
    response_model=TaskOut,
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorOut, "description": "The task is not failed or canceled."},
        **_UNAVAILABLE,
    },
    summary="Retry a failed or canceled task",
    dependencies=WRITE,
)
async def retry_task(
    task: TaskDep, caller: CallerDep, session: SessionDep, resources: ResourcesDep
) -> Task:
    """Dead-letter re-drive: the task is pending again with a fresh attempt budget;
    its earlier errors stay in `errors`."""
    return await service.retry_task(
        session=session, resources=resources, task=task, owner=caller.tenant
    )


@queues_router.get("", response_model=QueuesOut, responses=_UNAVAILABLE, summary="List queues")
async def list_queues(resources: ResourcesDep, caller: CallerDep) -> QueuesOut:
    """Each queue with its pending (ready + scheduled) and processing tasks per
    priority, and how long its oldest ready task has waited. An admin key sees every
    tenant's tasks; any other key with `queues:read` its owner's only."""
    return QueuesOut(queues=await service.queue_overview(resources=resources, owner=caller.tenant))
