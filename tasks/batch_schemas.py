"""Bodies of POST /tasks/batch: many POST /tasks bodies in one request, and one
result per item."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, JsonValue
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.error_bodies import ValidationErrorBody
from tasks.schemas import IDEMPOTENCY_KEY_PATTERN, TASK_EXAMPLE, TaskCreate, TaskOut, request_hash

MAX_BATCH_ITEMS = 1000
# Up to 8 KiB an item on average at 1,000 items; POST /tasks keeps its 1 MiB.
BATCH_MAX_BODY_BYTES = 8 * 1024 * 1024

_ITEM_EXAMPLES: list[JsonValue] = [
    {"message": "resize 1", "kind": "echo", "payload": {"width": 640}},
    {"message": "charge order 42", "idempotency_key": "order-42"},
]


class TaskBatchItem(TaskCreate):
    """One item of POST /tasks/batch: a POST /tasks body, and its Idempotency-Key."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": _ITEM_EXAMPLES})

    idempotency_key: str | None = Field(
        None,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="As POST /tasks's Idempotency-Key header: the same key and body within"
        " 24 h answer the first task (200) instead of creating another.",
    )

    def fingerprint(self) -> str:
        """The hash POST /tasks gives the same body: a key sent either way replays."""
        return request_hash(self.model_dump(mode="json", exclude={"idempotency_key"}))


class _AnyObjectOrItem:
    """An item is judged on its own: one that does not fit TaskBatchItem is refused
    in its result (422), not with the request. So the request's schema takes any
    object as an item, and names (by reference) the shape that is created."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                handler(TaskBatchItem.__pydantic_core_schema__),
                {
                    "type": "object",
                    "description": "Any other object: refused in its own result with 422.",
                },
            ],
            "description": "A POST /tasks body (TaskBatchItem), plus `idempotency_key`.",
        }


BatchItem = Annotated[dict[str, Any], _AnyObjectOrItem]


class TaskBatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tasks": _ITEM_EXAMPLES}]},
    )

    tasks: list[BatchItem] = Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        description="1 to 1,000 tasks, each a JSON object as POST /tasks takes it.",
    )


class BatchItemError(ValidationErrorBody):
    """Why an item was refused: the one error body, per item."""

    retry_after_seconds: int | None = Field(
        None,
        ge=1,
        description="With 429 and 503: what POST /tasks would send as `Retry-After`.",
    )


ItemStatus = Literal[200, 201, 403, 422, 429, 503]


class BatchResult(BaseModel):
    index: int = Field(ge=0, description="The item's position in `tasks`, from 0.")
    status: ItemStatus = Field(
        description="What POST /tasks would have answered for this item: 201 created,"
        " 200 the first task of its idempotency key, 403 another owner named,"
        " 422 invalid, 429 RATE_LIMIT, 503 QUEUE_MAX_PENDING."
    )
    task: TaskOut | None = Field(
        None, description="With 200 and 201, unless the request says `Prefer: return=minimal`."
    )
    id: uuid.UUID | None = Field(
        None,
        description="With 200 and 201 when the request says `Prefer: return=minimal`:"
        " the task's id, in place of the task.",
    )
    error: BatchItemError | None = Field(None, description="With any other status.")


# A task as POST /tasks answers it the moment it is stored.
_CREATED: dict[str, Any] = {
    **TASK_EXAMPLE,
    "message": "resize 1",
    "payload": {"width": 640},
    "status": "pending",
    "result": None,
    "attempts": 0,
    "expires_at": None,
    "worker_id": None,
    "updated_at": "2026-11-23T10:00:00.000000Z",
    "started_at": None,
    "finished_at": None,
}


class BatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {"index": 0, "status": 201, "task": _CREATED},
                        {
                            "index": 1,
                            "status": 422,
                            "error": {
                                "detail": "Idempotency-Key 'order-42' was used with a"
                                " different request body"
                            },
                        },
                    ],
                    "created": 1,
                    "replayed": 0,
                    "refused": 1,
                }
            ]
        }
    )

    results: list[BatchResult] = Field(description="One per item, in the order sent.")
    created: int = Field(description="Items answered 201.")
    replayed: int = Field(description="Items answered 200 (a replayed idempotency key).")
    refused: int = Field(description="Items answered 4xx or 503: nothing written for them.")
