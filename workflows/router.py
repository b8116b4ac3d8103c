"""HTTP routes of workflows: parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from auth.caller import Scope
from auth.dependencies import AUTH_RESPONSES, needs
from tasks.dependencies import RegistryDep, ResourcesDep, SessionDep
from tasks.schemas import ErrorOut
from workflows import service
from workflows.schemas import WorkflowCreate, WorkflowOut, WorkflowPatch

# Workflows (and the tasks they make) belong to no owner: an admin key creates
# and cancels them; a key with tasks:read reads them (README "Access control").
router = APIRouter(prefix="/workflows", tags=["workflows"], responses=AUTH_RESPONSES)

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "PostgreSQL or Redis is unreachable; retry later."}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such workflow."}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkflowOut,
    responses={
        422: {"description": "Invalid body, unknown kind, or past WORKFLOW_MAX_STEPS/GROUP."},
        **_UNAVAILABLE,
    },
    summary="Create a workflow",
    dependencies=needs(Scope.ADMIN),
)
async def create_workflow(
    body: WorkflowCreate, response: Response, resources: ResourcesDep, registry: RegistryDep
) -> WorkflowOut:
    """Steps run one after the other: a task, or a group of tasks run in parallel.
    A task step passes its result to the next (`parent_result`); a group passes
    every member's outcome, in order (`group_results`), once all are final."""
    created = await service.create_workflow(resources=resources, registry=registry, body=body)
    response.headers["Location"] = f"/workflows/{created.id}"
    return created


@router.get(
    "/{workflow_id}",
    response_model=WorkflowOut,
    responses={**_NOT_FOUND, **_UNAVAILABLE},
    summary="Get a workflow",
    dependencies=needs(Scope.TASKS_READ),
)
async def get_workflow(workflow_id: uuid.UUID, resources: ResourcesDep) -> WorkflowOut:
    """Its steps in order, each with its tasks and their statuses."""
    return await service.get_workflow(resources=resources, workflow_id=workflow_id)


@router.patch(
    "/{workflow_id}",
    response_model=WorkflowOut,
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorOut, "description": "The workflow has already finished."},
        **_UNAVAILABLE,
    },
    summary="Cancel a workflow",
    dependencies=needs(Scope.ADMIN),
)
async def patch_workflow(
    workflow_id: uuid.UUID, body: WorkflowPatch, session: SessionDep, resources: ResourcesDep
) -> WorkflowOut:
    """Only `{"status": "canceled"}`: steps not started are canceled, pending tasks
    canceled, running ones asked to stop."""
    return await service.cancel_workflow(
        session=session, resources=resources, workflow_id=workflow_id
    )
