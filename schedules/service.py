"""The rules of schedules: what may be stored, when the next tick falls, run now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.lifespan import Resources
from auth.caller import ANONYMOUS_ADMIN
from schedules import repository
from schedules.cron import Rule, next_after
from schedules.exceptions import InvalidSchedule, ScheduleExists, ScheduleNotFound
from schedules.schemas import ScheduleCreate, SchedulePatch
from tasks import repository as task_repository
from tasks import service as task_service
from tasks.handlers import Registry
from tasks.intake import Intake
from tasks.schemas import TaskCreate
from tasks.submissions import Accepted

# A PATCH may set these back to null (the kind rule's default, or the default).
NULLABLE = frozenset({"priority", "queue"})
RULE_FIELDS = ("cron", "every_seconds", "timezone")


def _first_tick(values: dict[str, Any]) -> datetime:
    rule = Rule(values["cron"], values["every_seconds"], values["timezone"])
    try:
        return next_after(rule, datetime.now(UTC))
    except ValueError as error:
        raise InvalidSchedule(str(error)) from None


async def create_schedule(*, resources: Resources, registry: Registry, body: ScheduleCreate) -> Any:
    values = body.model_dump()
    values["kind"] = body.kind or "echo"
    values["payload"] = body.payload or {}
    values["timezone"] = body.timezone or "UTC"
    values["message"] = body.message or f"schedule {body.id}"
    values["catch_up"] = body.catch_up or "latest"
    values["enabled"] = True if body.enabled is None else body.enabled
    task_service.check_kind(
        registry, values["kind"], values["payload"], settings=resources.settings
    )
    values["next_run_at"] = _first_tick(values)
    async with task_repository.driver_connection(resources.engine) as conn:
        row = await repository.insert(conn=conn, values=values)
        if row is None:
            raise ScheduleExists(body.id)
        return await repository.get(conn=conn, schedule_id=body.id)


async def get_schedule(*, resources: Resources, schedule_id: str) -> Any:
    async with task_repository.driver_connection(resources.engine) as conn:
        row = await repository.get(conn=conn, schedule_id=schedule_id)
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return row


async def list_schedules(
    *, resources: Resources, cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    async with task_repository.driver_connection(resources.engine) as conn:
        rows = await repository.page(conn=conn, after=cursor, limit=limit + 1)
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1]["id"])
    return rows, None


def merge(current: dict[str, Any], body: SchedulePatch) -> dict[str, Any]:
    """The schedule after a PATCH; a new rule or a re-enable starts from now."""
    changes = {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name in NULLABLE
    }
    merged = {**current, **changes}
    if "cron" in changes:
        merged["every_seconds"] = None
    if "every_seconds" in changes:
        merged["cron"] = None
    rule_changed = any(merged[name] != current[name] for name in RULE_FIELDS)
    if rule_changed or (merged["enabled"] and not current["enabled"]):
        merged["next_run_at"] = _first_tick(merged)
    return merged


async def update_schedule(
    *, resources: Resources, registry: Registry, schedule_id: str, body: SchedulePatch
) -> Any:
    async with task_repository.driver_connection(resources.engine) as conn:
        async with conn.transaction():
            current = await repository.lock(conn=conn, schedule_id=schedule_id)
            if current is None:
                raise ScheduleNotFound(schedule_id)
            merged = merge(dict(current), body)
            task_service.check_kind(
                registry, merged["kind"], merged["payload"], settings=resources.settings
            )
            await repository.update(conn=conn, values=merged)
        return await repository.get(conn=conn, schedule_id=schedule_id)


async def delete_schedule(*, resources: Resources, schedule_id: str) -> None:
    async with task_repository.driver_connection(resources.engine) as conn:
        if not await repository.delete(conn=conn, schedule_id=schedule_id):
            raise ScheduleNotFound(schedule_id)


async def run_now(
    *,
    intake: Intake,
    resources: Resources,
    registry: Registry,
    schedule_id: str,
    client: str | None,
) -> Accepted:
    """One task of the schedule now, through the tasks intake (admission included);
    the schedule's own ticks are not moved."""
    row = await get_schedule(resources=resources, schedule_id=schedule_id)
    body = TaskCreate(
        message=row["message"],
        kind=row["kind"],
        payload=row["payload"],
        priority=row["priority"],
        queue=row["queue"],
    )
    # Like the schedule's own ticks, the task belongs to no owner.
    return await task_service.create_task(
        intake=intake, resources=resources, registry=registry, body=body,
        caller=ANONYMOUS_ADMIN, client=client,
    )  # fmt: skip
