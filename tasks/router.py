"""HTTP routes of the task feature: parse, call the service, shape the answer."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, Security, status
from fastapi.responses import StreamingResponse
from starlette.convertors import StringConvertor, register_url_convertor

from app.config import QUEUE_PATTERN
from app.error_bodies import error_responses
from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES, CallerDep, require
from tasks import service, sse
from tasks.dependencies import (
    FeedDep,
    ResourcesDep,
    SessionDep,
    TaskDep,
    WaitersDep,
    WriterDep,
)
from tasks.event_schemas import STREAM_RESPONSE
from tasks.events import EVENT_ID_PATTERN
from tasks.models import Task, TaskStatus
from tasks.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    KIND_PATTERN,
    OWNER_PATTERN,
    UUID_PATTERN,
    QueuesOut,
    TaskCreate,
    TaskOut,
    TaskPage,
    TaskPatch,
)


class TaskIdConvertor(StringConvertor):
    """A task id in a path: any segment but `batch`, so that /tasks/batch is never
    taken for a task (GET /tasks/batch answers 405, not "not a UUID"); any other
    segment still reaches the route, which answers 422 when it is not a UUID."""

    regex = r"(?!batch(?:/|$))[^/]+"


register_url_convertor("task_id", TaskIdConvertor())

router = APIRouter(prefix="/tasks", tags=["tasks"], responses=AUTH_RESPONSES)
queues_router = APIRouter(
    prefix="/queues",
    tags=["queues"],
    dependencies=[Security(require, scopes=[Scope.QUEUES_READ])],
    responses=AUTH_RESPONSES,
)
events_router = APIRouter(
    prefix="/events",
    tags=["events"],
    dependencies=[Security(require, scopes=[Scope.TASKS_READ])],
    responses=AUTH_RESPONSES,
)
WRITE = [Security(require, scopes=[Scope.TASKS_WRITE])]
READ = [Security(require, scopes=[Scope.TASKS_READ])]

MAX_WAIT_S = 60
MAX_STREAM_S = 86400
WaitQuery = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_WAIT_S,
        description="Seconds to wait for a final status (completed, failed, canceled,"
        " expired) before answering; at most 60.",
    ),
]

_UNAVAILABLE = (503, "PostgreSQL or Redis is unreachable; retry after `Retry-After` seconds.")
_NOT_FOUND = (404, "No such task.")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    responses={
        200: {"model": TaskOut, "description": "Same Idempotency-Key and body: the first task."},
        202: {
            "model": TaskOut,
            "description": "With `wait`: not finished in time; it goes on (see Location).",
        },
        **error_responses(
            (
                422,
                "Invalid body, unknown kind, a payload its kind refuses, or an"
                " Idempotency-Key reused with another body.",
            ),
            (429, "RATE_LIMIT reached; retry after `Retry-After` seconds."),
            (503, "A store is down, or QUEUE_MAX_PENDING reached; retry after `Retry-After`."),
        ),
    },
    summary="Create a task",
)
async def create_task(
    body: TaskCreate,
    response: Response,
    writer: WriterDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)
    ] = None,
    wait: WaitQuery = None,
) -> TaskOut:
    """Store the task (committed in PostgreSQL), then ring the doorbell for a worker.
    With an `Idempotency-Key`, the same key and body within 24 h return the first task.
    With `wait=S`: 201 with the finished task if it ends within S seconds (200 for a
    replayed key), else 202 with the task as it is then; it goes on either way.
    The task belongs to the key's owner; only an admin key may name another `owner`."""
    started_s = time.monotonic()
    row, created = await service.create_task(
        intake=writer.intake, resources=writer.resources, registry=writer.registry, body=body,
        caller=writer.caller, idempotency_key=idempotency_key, client=writer.client,
    )  # fmt: skip
    if wait is not None:
        row = await service.wait_final(
            waiters=writer.waiters, row=row, timeout_s=wait - (time.monotonic() - started_s)
        )
        if not service.is_final(row):
            response.status_code = status.HTTP_202_ACCEPTED
    if not created and response.status_code != status.HTTP_202_ACCEPTED:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/tasks/{row['id']}"
    return TaskOut.model_validate(dict(row))


@router.get(
    "",
    response_model=TaskPage,
    responses=error_responses(
        (422, "A bad filter, limit or cursor; `errors` says which."), _UNAVAILABLE
    ),
    summary="List tasks",
    dependencies=READ,
)
async def list_tasks(
    session: SessionDep,
    caller: CallerDep,
    status: TaskStatus | None = None,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=UUID_PATTERN, description="The `next_cursor` of the page before."),
    ] = None,
    queue: Annotated[str | None, Query(pattern=QUEUE_PATTERN)] = None,
) -> TaskPage:
    """Newest first. Pass the `next_cursor` of one page as `cursor` to get the next.
    A key sees its owner's tasks only; an admin key sees every task."""
    items, next_cursor = await service.list_tasks(
        session=session, status=status, kind=kind, cursor=cursor, limit=limit,
        owner=caller.tenant, queue=queue,
    )  # fmt: skip
    return TaskPage(items=[TaskOut.model_validate(item) for item in items], next_cursor=next_cursor)


@router.get(
    "/{task_id:task_id}",
    response_model=TaskOut,
    responses=error_responses(_NOT_FOUND, (422, "The id or `wait` is invalid."), _UNAVAILABLE),
    summary="Get a task, or wait for it to finish",
    dependencies=READ,
)
async def get_task(
    task_id: uuid.UUID, waiters: WaitersDep, caller: CallerDep, wait: WaitQuery = None
) -> TaskOut:
    """With `wait=S`: answers as soon as the task is in a final status, or after S
    seconds with the task as it is then (no polling: the worker announces the end).
    Another owner's task is not found (and not waited for), unless the key is admin."""
    row = await service.get_task(waiters=waiters, task_id=task_id, wait_s=wait, owner=caller.tenant)
    return TaskOut.model_validate(dict(row))


@router.patch(
    "/{task_id:task_id}",
    response_model=TaskOut,
    responses={
        202: {"model": TaskOut, "description": "Running: its worker was asked to cancel it."},
        **error_responses(
            _NOT_FOUND,
            (409, "The task has already finished."),
            (422, "The id is not a UUID, or the body asks for another change."),
            _UNAVAILABLE,
        ),
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
    "/{task_id:task_id}/retry",
    response_model=TaskOut,
    responses=error_responses(
        _NOT_FOUND,
        (409, "The task is not failed or canceled."),
        (422, "The id is not a UUID."),
        _UNAVAILABLE,
    ),
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


@queues_router.get(
    "", response_model=QueuesOut, responses=error_responses(_UNAVAILABLE), summary="List queues"
)
async def list_queues(resources: ResourcesDep, caller: CallerDep) -> QueuesOut:
    """Each queue with its pending (ready + scheduled) and processing tasks per
    priority, and how long its oldest ready task has waited. An admin key sees every
    tenant's tasks; any other key with `queues:read` its owner's only."""
    return QueuesOut(queues=await service.queue_overview(resources=resources, owner=caller.tenant))


@events_router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: STREAM_RESPONSE,
        **error_responses(
            (422, "A bad filter or Last-Event-ID."),
            (503, "Redis is unreachable; retry after `Retry-After` seconds."),
        ),
    },
    summary="Follow task events live",
)
async def follow_events(
    feed: FeedDep,
    caller: CallerDep,
    queue: Annotated[str | None, Query(pattern=QUEUE_PATTERN)] = None,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
    owner: Annotated[str | None, Query(pattern=OWNER_PATTERN)] = None,
    status: TaskStatus | None = None,
    task_id: uuid.UUID | None = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=64, pattern=EVENT_ID_PATTERN)
    ] = None,
    max_seconds: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_STREAM_S,
            description="End the stream after this many seconds, with a final `timeout`"
            " event; unset, it goes on until the client leaves.",
        ),
    ] = None,
) -> StreamingResponse:
    """Every state change (created, started, completed, failed, retried, canceled,
    expired, redriven, released) of the tasks that match every filter given, as it
    happens. Send `Last-Event-ID` to resume after an event: the events since are
    replayed from the stream (as far back as EVENT_STREAM_MAX_ENTRIES reaches).
    A key sees its owner's events only (naming another `owner` is refused); an
    admin key sees every owner's."""
    owner = owner if caller.tenant is None else caller.owner_for(owner)
    where = sse.Filter(queue, kind, owner, status.value if status else None, task_id)
    body = await sse.open_stream(feed, where, last_event_id, max_seconds)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
