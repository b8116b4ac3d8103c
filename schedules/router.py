"""HTTP routes of schedules: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES, needs
from schedules import service
from schedules.schemas import (
    SCHEDULE_ID_PATTERN,
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    SchedulePatch,
)
from tasks.dependencies import ClientDep, IntakeDep, RegistryDep, ResourcesDep
from tasks.schemas import ErrorOut, TaskOut

# Schedules belong to no owner: an admin key makes and changes them; a key with
# tasks:read reads them (README "Access control").
router = APIRouter(prefix="/schedules", tags=["schedules"], responses=AUTH_RESPONSES)
READ = needs(Scope.TASKS_READ)
ADMIN = needs(Scope.ADMIN)

ScheduleId = Annotated[str, Path(pattern=SCHEDULE_ID_PATTERN)]

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "PostgreSQL or Redis is unreachable; retry later."}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such schedule."}
}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid body: a cron, time zone, kind or payload that does not fit."}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    responses={
        409: {"model": ErrorOut, "description": "A schedule with this id exists."},
        **_INVALID,
        **_UNAVAILABLE,
    },
    summary="Create a schedule",
    dependencies=ADMIN,
)
async def create_schedule(
    body: ScheduleCreate, response: Response, resources: ResourcesDep, registry: RegistryDep
) -> ScheduleOut:
    """Tasks of `kind` on a `cron` expression (in `timezone`) or `every_seconds`;
    exactly one task per tick, however many workers run."""
    row = await service.create_schedule(resources=resources, registry=registry, body=body)
    response.headers["Location"] = f"/schedules/{row['id']}"
    return ScheduleOut.model_validate(dict(row))


@router.get(
    "",
    response_model=ScheduleList,
    responses=_UNAVAILABLE,
    summary="List schedules",
    dependencies=READ,
)
async def list_schedules(
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=SCHEDULE_ID_PATTERN)] = None,
) -> ScheduleList:
    """By id, with each one's next and last tick and the status of its last task."""
    rows, next_cursor = await service.list_schedules(
        resources=resources, cursor=cursor, limit=limit
    )
    items = [ScheduleOut.model_validate(dict(row)) for row in rows]
    return ScheduleList(items=items, next_cursor=next_cursor)


@router.get(
    "/{schedule_id}",
    response_model=ScheduleOut,
    responses={**_NOT_FOUND, **_UNAVAILABLE},
    summary="Get a schedule",
    dependencies=READ,
)
async def get_schedule(schedule_id: ScheduleId, resources: ResourcesDep) -> ScheduleOut:
    row = await service.get_schedule(resources=resources, schedule_id=schedule_id)
    return ScheduleOut.model_validate(dict(row))


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleOut,
    responses={**_NOT_FOUND, **_INVALID, **_UNAVAILABLE},
    summary="Change a schedule",
    dependencies=ADMIN,
)
async def patch_schedule(
    schedule_id: ScheduleId, body: SchedulePatch, resources: ResourcesDep, registry: RegistryDep
) -> ScheduleOut:
    """Fields given replace the stored ones (`priority` and `queue` may be null). A
    new cron, period or time zone, or `enabled: true` again, starts from now:
    ticks of the time it was off are not caught up."""
    row = await service.update_schedule(
        resources=resources, registry=registry, schedule_id=schedule_id, body=body
    )
    return ScheduleOut.model_validate(dict(row))


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_NOT_FOUND, **_UNAVAILABLE},
    summary="Delete a schedule",
    dependencies=ADMIN,
)
async def delete_schedule(schedule_id: ScheduleId, resources: ResourcesDep) -> Response:
    """Tasks it created stay. A schedule declared in code comes back when a worker starts."""
    await service.delete_schedule(resources=resources, schedule_id=schedule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{schedule_id}/run",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    responses={
        **_NOT_FOUND,
        429: {"model": ErrorOut, "description": "RATE_LIMIT reached; see Retry-After."},
        503: {"model": ErrorOut, "description": "A store is down, or QUEUE_MAX_PENDING reached."},
    },
    summary="Run a schedule once now",
    dependencies=ADMIN,
)
async def run_schedule(
    schedule_id: ScheduleId,
    response: Response,
    intake: IntakeDep,
    resources: ResourcesDep,
    registry: RegistryDep,
    client: ClientDep,
) -> TaskOut:
    """One task of the schedule now, as `POST /tasks` would make it; the schedule's
    own ticks go on as before."""
    row, _ = await service.run_now(
        intake=intake, resources=resources, registry=registry, schedule_id=schedule_id,
        client=client,
    )  # fmt: skip
    response.headers["Location"] = f"/tasks/{row['id']}"
    return TaskOut.model_validate(dict(row))
