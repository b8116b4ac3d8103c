"""The rules of workflows: what may be created, how it is shown, how it is canceled."""

from __future__ import annotations

import logging
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.ids import uuid7
from app.lifespan import Resources
from tasks import repository as task_repository
from tasks import service as task_service
from tasks.doorbell import Doorbell
from tasks.exceptions import TaskConflict
from tasks.handlers import Registry
from workflows import repository
from workflows.exceptions import WorkflowConflict, WorkflowNotFound, WorkflowTooLarge
from workflows.progress import start_step
from workflows.schemas import GroupStep, MemberOut, StepOut, StepTask, WorkflowCreate, WorkflowOut

log = logging.getLogger("taskline.api")


@dataclass(frozen=True, slots=True)
class Member:
    """One task of a step, with every default resolved."""

    position: int
    member: int
    kind: str
    message: str
    payload: dict[str, Any]
    queue: str
    priority: int
    max_attempts: int
    timeout_seconds: float


def _groups(body: WorkflowCreate) -> list[list[StepTask]]:
    return [step.group if isinstance(step, GroupStep) else [step] for step in body.steps]


def check_limits(body: WorkflowCreate, *, max_steps: int, max_group: int) -> None:
    if len(body.steps) > max_steps:
        raise WorkflowTooLarge(
            f"the workflow has {len(body.steps)} steps; WORKFLOW_MAX_STEPS is {max_steps}"
        )
    widest = max(len(group) for group in _groups(body))
    if widest > max_group:
        raise WorkflowTooLarge(f"a group has {widest} tasks; WORKFLOW_MAX_GROUP is {max_group}")


def resolve(body: WorkflowCreate, resources: Resources, registry: Registry) -> list[Member]:
    """Every task checked (kind, payload) and its defaults filled in, as POST /tasks would."""
    settings = resources.settings
    members = []
    for position, group in enumerate(_groups(body), start=1):
        for number, task in enumerate(group):
            task_service.check_kind(registry, task.kind, task.payload, settings=settings)
            rule = task_service.kind_rule(settings, task.kind)
            priority = next(
                p for p in (task.priority, rule.priority, task_service.DEFAULT_PRIORITY)
                if p is not None
            )  # fmt: skip
            members.append(
                Member(
                    position, number, task.kind, task.message, task.payload,
                    task.queue or rule.queue or task_service.DEFAULT_QUEUE, priority,
                    task.max_attempts or settings.default_max_attempts,
                    task.timeout_seconds or settings.default_timeout_s,
                )
            )  # fmt: skip
    return members


async def create_workflow(
    *, resources: Resources, registry: Registry, body: WorkflowCreate
) -> WorkflowOut:
    """Store the workflow, its steps and the first step's tasks in one transaction,
    then ring the first tasks' doorbells. A refused body writes nothing."""
    settings = resources.settings
    check_limits(body, max_steps=settings.workflow_max_steps, max_group=settings.workflow_max_group)
    members = resolve(body, resources, registry)
    groups = _groups(body)
    workflow_id = uuid7()
    async with task_repository.driver_connection(resources.engine) as conn, conn.transaction():
        await repository.insert_workflow(conn=conn, workflow_id=workflow_id, steps=len(groups))
        await repository.insert_steps(
            conn=conn,
            workflow_id=workflow_id,
            is_group=[isinstance(step, GroupStep) for step in body.steps],
            sizes=[len(group) for group in groups],
        )
        await repository.insert_members(conn=conn, workflow_id=workflow_id, members=members)
        bells = await start_step(conn, workflow_id, 1, None)
    try:
        await Doorbell(resources).ring(bells)
    except Exception as error:  # committed: the reconcile rings them after its grace
        log.warning("workflow %s stored but its first tasks not rung: %s", workflow_id, error)
    return await get_workflow(resources=resources, workflow_id=workflow_id)


async def get_workflow(*, resources: Resources, workflow_id: uuid.UUID) -> WorkflowOut:
    async with task_repository.driver_connection(resources.engine) as conn:
        workflow = await repository.get_workflow(conn=conn, workflow_id=workflow_id)
        if workflow is None:
            raise WorkflowNotFound(workflow_id)
        steps = await repository.steps_of(conn=conn, workflow_id=workflow_id)
        members = await repository.members_of(conn=conn, workflow_id=workflow_id)
    by_step: dict[int, list[MemberOut]] = {}
    for m in members:
        step_status = steps[m["position"] - 1]["status"]
        by_step.setdefault(m["position"], []).append(
            MemberOut(
                member=m["member"], kind=m["kind"], message=m["message"], task_id=m["task_id"],
                status=m["task_status"] or ("canceled" if step_status == "canceled" else "waiting"),
                error=m["error"],
            )
        )  # fmt: skip
    return WorkflowOut(
        **{k: workflow[k] for k in ("id", "status", "error", "created_at", "updated_at")},
        finished_at=workflow["finished_at"],
        steps=[
            StepOut(
                position=s["position"], group=s["is_group"], status=s["status"],
                remaining=s["remaining"], error=s["error"], tasks=by_step.get(s["position"], []),
            )
            for s in steps
        ],
    )  # fmt: skip


async def cancel_workflow(
    *, session: AsyncSession, resources: Resources, workflow_id: uuid.UUID
) -> WorkflowOut:
    """Steps not started are canceled; its pending tasks are canceled and running
    ones asked to stop, as PATCH /tasks/{id} does. Canceling twice is not an error."""
    async with task_repository.driver_connection(resources.engine) as conn:
        async with conn.transaction():
            status = await repository.lock_workflow(conn=conn, workflow_id=workflow_id)
            if status is None:
                raise WorkflowNotFound(workflow_id)
            if status not in ("running", "canceled"):
                raise WorkflowConflict(
                    f"workflow {workflow_id} is {status}; a finished workflow cannot be canceled"
                )
            await repository.end_workflow(
                conn=conn, workflow_id=workflow_id, status="canceled",
                error="canceled", reason="canceled: the workflow was canceled",
            )  # fmt: skip
        active = await repository.active_tasks(conn=conn, workflow_id=workflow_id)
    for task_id in active:
        task = await task_repository.get_task(session=session, task_id=task_id, owner=None)
        if task is None:
            continue
        with suppress(TaskConflict):  # it finished meanwhile
            await task_service.cancel_task(
                session=session, resources=resources, task=task, owner=None
            )
    return await get_workflow(resources=resources, workflow_id=workflow_id)
