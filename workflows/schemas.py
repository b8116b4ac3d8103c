"""Request and response bodies of the workflows API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.config import QUEUE_PATTERN
from tasks.schemas import (
    KIND_PATTERN,
    MESSAGE_PATTERN,
    MaxAttempts,
    Priority,
    TimeoutSeconds,
    check_message,
    check_payload,
)

# Bounds on parsing alone; the settings (WORKFLOW_MAX_*) are checked after.
HARD_MAX = 10_000


class StepTask(BaseModel):
    """One task of a workflow: the fields of `POST /tasks` that make sense in one."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(
        min_length=1,
        pattern=MESSAGE_PATTERN,
        description="What the task is about; at most 64 KiB.",
    )
    kind: str = Field("echo", pattern=KIND_PATTERN)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: Priority | None = None
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)
    max_attempts: MaxAttempts | None = None
    timeout_seconds: TimeoutSeconds | None = None

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        return check_message(value)

    @field_validator("payload")
    @classmethod
    def _payload(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_payload(value)


class GroupStep(BaseModel):
    """Tasks run in parallel; the next step starts once every one of them is over."""

    model_config = ConfigDict(extra="forbid")

    group: list[StepTask] = Field(min_length=1, max_length=HARD_MAX)


class WorkflowCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"steps": [{"message": "fetch"}, {"message": "parse"}, {"message": "store"}]},
                {"steps": [{"group": [{"message": "a"}, {"message": "b"}]},
                           {"message": "sum them"}]},
            ]
        },
    )  # fmt: skip

    steps: list[StepTask | GroupStep] = Field(
        min_length=1,
        max_length=HARD_MAX,
        description='In order: a task, or {"group": [tasks]}; each starts when the one'
        " before is over (a task: completed; a group: every member final).",
    )


class WorkflowPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["canceled"] = Field(description="The only change a client may ask for.")


class MemberOut(BaseModel):
    member: int = Field(description="Its place in the group, from 0.")
    kind: str
    message: str
    task_id: uuid.UUID | None = Field(description="Null until the step starts.")
    status: str = Field(description="The task's status; `waiting` or `canceled` if none.")
    error: str | None


class StepOut(BaseModel):
    position: int = Field(description="1 for the first step.")
    group: bool
    status: Literal["waiting", "running", "done", "canceled"]
    remaining: int = Field(description="Tasks of the step not final yet (the fan-in count).")
    error: str | None = Field(description="Why the step was canceled.")
    tasks: list[MemberOut]


class WorkflowOut(BaseModel):
    id: uuid.UUID
    status: Literal["running", "completed", "failed", "canceled"]
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    steps: list[StepOut]
