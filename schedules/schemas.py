"""Request and response bodies of the schedules API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator
from pydantic.config import JsonDict

from app.config import QUEUE_PATTERN
from schedules.cron import cron_problem, zone_problem
from tasks.schemas import (
    KIND_PATTERN,
    MESSAGE_PATTERN,
    NUMBER_ONLY,
    Priority,
    check_message,
    check_payload,
)

SCHEDULE_ID_PATTERN = KIND_PATTERN
MAX_EVERY_SECONDS = 366 * 86400
CatchUp = Literal["none", "latest", "all"]
EverySeconds = Annotated[int, Field(ge=1, le=MAX_EVERY_SECONDS), NUMBER_ONLY]
# The shape of a cron expression: five fields, or a macro such as @hourly.
# Whether croniter reads it (values in range, say) is checked beside it.
_CRON_FIELD = r"[0-9A-Za-z*?/,#-]+"
CRON_PATTERN = rf"^\s*(@[a-z]+|{_CRON_FIELD}(\s+{_CRON_FIELD}){{4}})\s*$"
# The shape of an IANA time zone name (Europe/Berlin, Etc/GMT+5, UTC); whether
# zoneinfo knows it is checked beside it. (An enum of every name would put some
# 600 names in each schema that has a time zone.)
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"


class ScheduleFields(BaseModel):
    """What a schedule is made of; every field optional (a PATCH), checked alone."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = Field(None, pattern=KIND_PATTERN, description="The handler to run.")
    cron: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=CRON_PATTERN,
        description="5-field cron expression, in `timezone`.",
    )
    every_seconds: EverySeconds | None = Field(
        None, description="Or a period: ticks at multiples of it."
    )
    timezone: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=TIME_ZONE_PATTERN,
        description="IANA name the cron is read in (UTC).",
    )
    payload: dict[str, Any] | None = Field(None, description="The payload of each task.")
    message: str | None = Field(
        None, min_length=1, pattern=MESSAGE_PATTERN, description="Each task's message."
    )
    priority: Priority | None = None
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)
    catch_up: CatchUp | None = Field(
        None, description="Ticks missed while no worker ran: none, latest (default) or all."
    )
    enabled: StrictBool | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        problem = None if value is None else cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        problem = None if value is None else zone_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("payload")
    @classmethod
    def _payload(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # The same checks (size, NUL, NaN) as a task's payload.
        return None if value is None else check_payload(value)

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return None if value is None else check_message(value)


_CRON: JsonDict = {"required": ["cron"], "properties": {"cron": {"type": "string"}}}
_EVERY: JsonDict = {
    "required": ["every_seconds"],
    "properties": {"every_seconds": {"type": "integer"}},
}


class ScheduleCreate(ScheduleFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id": "nightly-report", "kind": "echo", "cron": "0 2 * * *",
                 "timezone": "Europe/Berlin"},
                {"id": "heartbeat", "kind": "echo", "every_seconds": 30, "catch_up": "none"},
            ],
            "oneOf": [_CRON, _EVERY],  # exactly one of them, not null
        },
    )  # fmt: skip

    id: str = Field(pattern=SCHEDULE_ID_PATTERN, description="Your name for it; unique.")
    kind: str | None = Field("echo", pattern=KIND_PATTERN, description="The handler to run.")

    @model_validator(mode="after")
    def _one_rule(self) -> ScheduleCreate:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("give cron or every_seconds, exactly one of them")
        return self


class SchedulePatch(ScheduleFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"enabled": False}, {"cron": "*/10 * * * *"}],
            "not": {"allOf": [_CRON, _EVERY]},  # not both
        },
    )

    @model_validator(mode="after")
    def _at_most_one_rule(self) -> SchedulePatch:
        if self.cron is not None and self.every_seconds is not None:
            raise ValueError("give cron or every_seconds, not both")
        return self


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    message: str
    payload: dict[str, Any]
    cron: str | None
    every_seconds: int | None
    timezone: str
    priority: int | None
    queue: str | None
    catch_up: CatchUp
    enabled: bool
    declared: bool = Field(description="Declared in code (stored by the workers at start).")
    next_run_at: datetime = Field(description="The next tick a task is owed for.")
    last_run_at: datetime | None = Field(description="The tick of the last task created.")
    last_task_id: uuid.UUID | None
    last_task_status: str | None = Field(
        None, description="Status of that task; null if none, or once it has been deleted."
    )
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
