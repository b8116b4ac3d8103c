"""Request and response bodies of the tasks API."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, to_json
from typing_extensions import TypeAliasType

from app.config import MAX_PRIORITY, QUEUE_PATTERN
from app.error_bodies import ErrorBody
from tasks.models import TaskStatus
from tasks.presence import WorkerReport

MAX_MESSAGE_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_DELAY_S = 366 * 86400
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
KIND_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
OWNER_PATTERN = r"^[\x21-\x7e]{1,200}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def json_size(value: Any) -> int:
    """Bytes of compact JSON; NaN and Infinity are refused (ValueError): PostgreSQL's
    JSON has neither. pydantic_core's encoder: json.dumps took 3 µs for `{}`."""
    if _non_finite(value):
        raise ValueError("NaN or Infinity")
    return len(to_json(value))


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_non_finite(item) for item in value)
    return False


def has_nul(value: Any) -> bool:
    """PostgreSQL text and jsonb cannot hold U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


# Any JSON whose strings (and object keys) hold no U+0000, which PostgreSQL
# cannot store: the shape of a payload or a message's data, for the OpenAPI
# document. The API checks it with has_nul (and the size with json_size).
NUL_FREE_PATTERN = r"^[^\x00]*$"
NulFreeText = Annotated[str, StringConstraints(pattern=NUL_FREE_PATTERN)]


class PropertyNames:
    """A dict's key constraints as JSON Schema's `propertyNames`: pydantic writes
    them as `patternProperties`, which says nothing of the keys that do not match."""

    def __init__(self, **key_schema: Any) -> None:
        self.key_schema = key_schema

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        patterns = schema.pop("patternProperties", None)
        if patterns:
            [schema["additionalProperties"]] = patterns.values()
        schema["propertyNames"] = self.key_schema
        return schema


NulFreeJson = TypeAliasType(
    "NulFreeJson",
    "bool | int | float | NulFreeText | list[NulFreeJson]"
    " | Annotated[dict[NulFreeText, NulFreeJson], PropertyNames(pattern=NUL_FREE_PATTERN)]"
    " | None",
)


def _json_number(value: Any) -> Any:
    """A JSON number only: pydantic's lax mode also takes `true` and `"3"`, which
    JSON Schema's `integer` and `number` refuse (3.0 is an integer to both)."""
    if isinstance(value, bool | str):
        raise ValueError(f"Input should be a number, not {type(value).__name__}")
    return value


# Last in an Annotated, after the bounds (so that they stay in the JSON schema).
NUMBER_ONLY = BeforeValidator(_json_number)
JsonInt = Annotated[int, NUMBER_ONLY]
JsonFloat = Annotated[float, NUMBER_ONLY]
Priority = Annotated[int, Field(ge=0, le=MAX_PRIORITY), NUMBER_ONLY]
MaxAttempts = Annotated[int, Field(ge=1, le=100), NUMBER_ONLY]
TimeoutSeconds = Annotated[float, Field(gt=0, le=86400), NUMBER_ONLY]
# A message as check_message takes it, for the OpenAPI document: no U+0000,
# and not blank (what str.strip() removes is what `\s` and U+001C..U+001F match).
MESSAGE_PATTERN = r"^[^\x00]*[^\s\x00\x1c-\x1f][^\x00]*$"


def check_message(value: str) -> str:
    """A task's message: not blank, no NUL, at most MAX_MESSAGE_BYTES."""
    # Checked on every item of a batch: isspace() makes no copy as strip() does,
    # and a message of fewer than a quarter as many characters fits in any UTF-8.
    if not value or value.isspace():
        raise ValueError("message must not be blank")
    if "\x00" in value:
        raise ValueError("message must not contain NUL characters")
    if len(value) * 4 > MAX_MESSAGE_BYTES and len(value.encode()) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message is over {MAX_MESSAGE_BYTES} bytes")
    return value


def check_payload(value: dict[str, Any]) -> dict[str, Any]:
    """A task's payload: no NUL, no NaN or Infinity, at most MAX_PAYLOAD_BYTES of JSON."""
    if not value:  # `{}`, the default: nothing to check (0.6 µs a task of a batch)
        return value
    if has_nul(value):
        raise ValueError("payload must not contain NUL characters")
    try:
        size = json_size(value)
    except ValueError:
        raise ValueError("payload must not contain NaN or Infinity") from None
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is over {MAX_PAYLOAD_BYTES} bytes of JSON")
    return value


def request_hash(fields: dict[str, Any]) -> str:
    """A task body's hash, stored beside its Idempotency-Key."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"message": "Hello World"},
                {"message": "nap", "kind": "sleep", "payload": {"seconds": 2}},
            ]
        },
    )

    message: str = Field(min_length=1, description="What the task is about; at most 64 KiB.")
    kind: str = Field("echo", pattern=KIND_PATTERN, description="The handler that runs the task.")
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments for the handler: a JSON object, at most 256 KiB.",
    )
    max_attempts: int | None = Field(
        None, ge=1, le=100, description="Attempts before the task fails for good (default 3)."
    )
    timeout_seconds: float | None = Field(
        None, gt=0, le=86400, description="How long one attempt may run (default 300)."
    )
    run_at: AwareDatetime | None = Field(
        None, description="Not before this time (ISO 8601 with a time zone)."
    )
    delay_seconds: float | None = Field(
        None, ge=0, le=MAX_DELAY_S, description="Not before this many seconds from now."
    )

    expires_at: AwareDatetime | None = Field(
        None, description="Not started by then: it ends `expired` and never runs."
    )
    priority: int | None = Field(
        None,
        ge=0,
        le=MAX_PRIORITY,
        description="0 runs first; default from KIND_RULES, else 5.",
    )
    queue: str | None = Field(
        None,
        pattern=QUEUE_PATTERN,
        description="Workers serve WORKER_QUEUES; default from KIND_RULES, else `default`.",
    )
    owner: str | None = Field(
        None,
        pattern=OWNER_PATTERN,
        description="The user or tenant the task is for; FAIRNESS=levels orders by it.",
    )
    ttl_seconds: float | None = Field(
        None, gt=0, le=MAX_DELAY_S, description="Expires this many seconds from now."
    )

    @model_validator(mode="after")
    def _one_way_each(self) -> TaskCreate:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        if self.expires_at is not None and self.ttl_seconds is not None:
            raise ValueError("give expires_at or ttl_seconds, not both")
        return self

    def expiry(self) -> datetime | None:
        if self.ttl_seconds is not None:
            return datetime.now(UTC) + timedelta(seconds=self.ttl_seconds)
        return self.expires_at

    def fingerprint(self) -> str:
        """A hash of the request, to tell a replay from a different request."""
        return request_hash(self.model_dump(mode="json"))

    def not_before(self) -> datetime | None:
        if self.delay_seconds is not None:
            return datetime.now(UTC) + timedelta(seconds=self.delay_seconds)
        return self.run_at

    @field_validator("message")
    @classmethod
    def _message_size(cls, value: str) -> str:
        return check_message(value)

    @field_validator("payload")
    @classmethod
    def _payload_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_payload(value)


class TaskPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "canceled"}]}
    )

    status: Literal["canceled"] = Field(description="The only change a client may ask for.")


TASK_EXAMPLE: dict[str, Any] = {
    "id": "019a8f3c-5a7e-7c11-9d2e-6f1b2a3c4d5e",
    "message": "Hello World",
    "kind": "echo",
    "payload": {},
    "status": "completed",
    "result": {"message": "Hello World"},
    "error": None,
    "errors": [],
    "attempts": 1,
    "max_attempts": 3,
    "redrives": 0,
    "timeout_seconds": 300.0,
    "run_at": "2026-11-23T10:00:00.000000Z",
    "lease_expires_at": None,
    "worker_id": "host:4242:a1b2c3",
    "cancel_requested": False,
    "queue": "default",
    "priority": 5,
    "fair_level": 0,
    "owner": None,
    "workflow_id": None,
    "created_at": "2026-11-23T10:00:00.000000Z",
    "updated_at": "2026-11-23T10:00:00.004000Z",
    "started_at": "2026-11-23T10:00:00.002000Z",
    "finished_at": "2026-11-23T10:00:00.004000Z",
}


class TaskOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [TASK_EXAMPLE]},
    )

    id: uuid.UUID
    message: str
    kind: str
    payload: dict[str, Any]
    status: TaskStatus
    result: Any | None
    error: str | None
    errors: list[dict[str, Any]] = Field(
        description="Every failed attempt: redrive, attempt, error, at. `attempt` counts from 1"
        " again after each re-drive (POST /tasks/{id}/retry); (redrive, attempt) is unique."
    )
    attempts: int = Field(description="Attempts started since creation or the last re-drive.")
    max_attempts: int
    redrives: int = Field(
        description="How many times POST /tasks/{id}/retry sent it round again (for a message,"
        " also each move to a dead queue and each redrive)."
    )
    timeout_seconds: float | None
    run_at: datetime = Field(description="Not claimed before this time (delay, retry backoff).")
    expires_at: datetime | None = Field(description="Not started by then: expired.")
    lease_expires_at: datetime | None
    worker_id: str | None
    cancel_requested: bool
    queue: str
    priority: int
    fair_level: int = Field(description="The owner's fairness level when it was created.")
    owner: str | None
    workflow_id: uuid.UUID | None = Field(
        None, description="The workflow this task is a step of (GET /workflows/{id})."
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


TASK_FIELDS = tuple(TaskOut.model_fields)


def task_values(row: Any) -> dict[str, Any]:
    """A task's row as TaskOut in plain values, for pydantic_core's to_json: the
    same bytes as TaskOut validated and dumped, at a third of the cost (6 µs
    against 17). The rows are the database's or made from validated input, and
    tests compare these answers with the routes' own (test_fast_create, test_batch).
    The id goes as text: to_json takes asyncpg's UUID, every id read or made
    (app/ids.py), twenty times slower than its text, which it writes the same."""
    values = {field: row[field] for field in TASK_FIELDS}
    values["id"] = str(values["id"])
    return values


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next (older) page; null on the last page."
    )


class PriorityCounts(BaseModel):
    priority: int
    pending: int = Field(description="ready + scheduled")
    ready: int = Field(description="Due now, waiting for a worker.")
    scheduled: int = Field(description="Waiting for run_at (a delay or a retry backoff).")
    processing: int


class QueueOut(BaseModel):
    name: str
    pending: int
    ready: int
    scheduled: int
    processing: int
    oldest_ready_age_s: float | None = Field(
        description="How long the oldest ready task has waited; null when none is ready."
    )
    priorities: list[PriorityCounts] = Field(description="Priorities with active tasks only.")


class QueuesOut(BaseModel):
    queues: list[QueueOut]


ErrorOut = ErrorBody  # the one error body (app/error_bodies.py), under its earlier name here


class WorkerOut(BaseModel):
    """A live worker, as its last heartbeat report says (every WORKER_LEASE_SECONDS / 3)."""

    id: str = Field(description="`host:pid:suffix`, the `worker_id` its tasks carry.")
    host: str
    pid: int
    queues: list[str] = Field(description="The queues it takes tasks from.")
    slots_busy: int = Field(description="Slots running a handler now.")
    slots_total: int = Field(description="Its slots (WORKER_QUEUE_MAXSIZE).")
    heartbeat_at: AwareDatetime = Field(description="When it last reported.")
    heartbeat_age_s: float = Field(description="Seconds since it last reported.")
    started_at: AwareDatetime

    @classmethod
    def from_report(cls, report: WorkerReport) -> WorkerOut:
        return cls(
            id=report.id, host=report.host, pid=report.pid, queues=report.queues,
            slots_busy=report.slots_busy, slots_total=report.slots_total,
            heartbeat_at=datetime.fromtimestamp(report.heartbeat_at_s, UTC),
            heartbeat_age_s=round(report.heartbeat_age_s, 3),
            started_at=datetime.fromtimestamp(report.started_at_s, UTC),
        )  # fmt: skip


class WorkersOut(BaseModel):
    workers: list[WorkerOut] = Field(
        description="By id; a worker drops out once its report expires."
    )
