"""Domain errors of workflows; TaskErrors, so main.py's one handler maps them to HTTP."""

from __future__ import annotations

import uuid

from tasks.exceptions import TaskError


class WorkflowNotFound(TaskError):
    status_code = 404

    def __init__(self, workflow_id: uuid.UUID) -> None:
        super().__init__(f"workflow {workflow_id} not found")


class WorkflowConflict(TaskError):
    status_code = 409


class WorkflowTooLarge(TaskError):
    """Past WORKFLOW_MAX_STEPS or WORKFLOW_MAX_GROUP; nothing was written."""

    status_code = 422
