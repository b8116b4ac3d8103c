"""POST /run/{kind}: call a handler through the queue in one request.

One operation per registered kind whose handler declares a payload model (so
/docs shows each kind's body), then a generic one for the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Generic, TypeVar, Union

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from app.config import QUEUE_PATTERN
from auth.dependencies import AUTH_RESPONSES
from tasks import runs
from tasks.dependencies import WriterDep
from tasks.handlers import Registry
from tasks.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    KIND_PATTERN,
    OWNER_PATTERN,
    ErrorOut,
    MaxAttempts,
    Priority,
    TimeoutSeconds,
)

RUN_DEFAULT_WAIT_S = 30
RUN_MAX_WAIT_S = 300

P = TypeVar("P")


class RunEnvelope(BaseModel, Generic[P]):
    """The payload with a few of the task's options."""

    model_config = ConfigDict(extra="forbid")

    payload: P
    priority: Priority | None = Field(None, description="0 runs first.")
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)
    owner: str | None = Field(None, pattern=OWNER_PATTERN)
    timeout_seconds: TimeoutSeconds | None = None
    max_attempts: MaxAttempts | None = None


class RunOut(BaseModel):
    task_id: uuid.UUID
    status: str = Field(description="Always `completed` here.")
    result: Any = Field(description="What the handler returned.")


class RunFailedOut(ErrorOut):
    task_id: uuid.UUID
    status: str = Field(description="failed, canceled or expired")
    errors: list[dict[str, Any]] = Field(description="Every failed attempt's error.")


class RunPendingOut(ErrorOut):
    task_id: uuid.UUID
    status: str = Field(description="pending or processing: it goes on.")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No handler for this kind."},
    422: {"description": "Invalid payload or options."},
    429: {"model": ErrorOut, "description": "RATE_LIMIT reached; see Retry-After."},
    502: {
        "model": RunFailedOut,
        "description": "The task failed after its attempts (or was"
        " canceled, or expired): its errors.",
    },
    503: {
        "model": ErrorOut,
        "description": "QUEUE_MAX_PENDING or KIND_MAX_BACKLOG reached,"
        " or a store is down; see Retry-After.",
    },
    504: {
        "model": RunPendingOut,
        "description": "No result within `wait`; the task goes on (see Location).",
        "headers": {
            "Location": {
                "description": "The task, to follow it: `/tasks/{task_id}`.",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    },
}
WaitQuery = Annotated[
    float,
    Query(gt=0, le=RUN_MAX_WAIT_S, description="Seconds to wait for the result (at most 300)."),
]
KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)]
Endpoint = Callable[..., Awaitable[dict[str, Any]]]


def run_router(registry: Registry) -> APIRouter:
    router = APIRouter(
        prefix="/run",
        tags=["run"],
        responses=AUTH_RESPONSES,  # WriterDep checks tasks:write
    )
    typed: list[str] = []
    for kind in registry.kinds():
        handler = registry.get(kind)
        if handler is not None and handler.payload_model is not None:
            model: Any = handler.payload_model
            router.add_api_route(
                f"/{kind}", _kind_endpoint(kind, Union[model, RunEnvelope[model]]),  # noqa: UP007
                methods=["POST"], response_model=RunOut, responses=_RESPONSES,
                summary=f"Run {kind} and answer with its result", operation_id=f"run_{kind}",
            )  # fmt: skip
            typed.append(kind)
    router.add_api_route(
        "/{kind}", _any_kind_endpoint(typed), methods=["POST"], response_model=RunOut,
        responses=_RESPONSES, summary="Run a handler and answer with its result",
        operation_id="run_kind",
    )  # fmt: skip
    return router


async def run_context(writer: WriterDep, idempotency_key: KeyHeader = None) -> runs.RunContext:
    """What every /run operation hands to runs.run: the API's parts and the caller."""
    return runs.RunContext(
        writer.intake, writer.resources, writer.registry, writer.waiters, writer.client,
        idempotency_key, writer.caller,
    )  # fmt: skip


RunContextDep = Annotated[runs.RunContext, Depends(run_context)]


RUN_DOC = """Create a task of this kind with the body as its payload (or an envelope:
`{"payload": {...}, "priority", "queue", "owner", "timeout_seconds",
"max_attempts"}` and nothing else), wait for it and answer with its result:
200 once completed, 502 if it failed, 504 with its id if `wait` ran out
first (it goes on). The task belongs to the key's owner; only an admin key may
name another `owner`."""


def _any_kind_endpoint(typed: list[str]) -> Endpoint:
    async def run_any_kind(
        request: Request,
        kind: str,
        body: Annotated[dict[str, Any] | RunEnvelope[dict[str, Any]], Body()],
        context: RunContextDep,
        wait: WaitQuery = RUN_DEFAULT_WAIT_S,
    ) -> dict[str, Any]:
        raw = await request.json()  # as sent: FastAPI has parsed it already
        envelope = runs.is_envelope(raw)
        return await runs.run(context, kind=kind, body=raw, envelope=envelope, wait_s=wait)

    run_any_kind.__doc__ = RUN_DOC
    # The kinds with a payload model have an operation of their own: not this one.
    other = {"not": {"enum": typed}} if typed else None
    run_any_kind.__annotations__["kind"] = Annotated[
        str, Path(pattern=KIND_PATTERN, json_schema_extra=other)
    ]
    return run_any_kind


def _kind_endpoint(kind: str, body_type: Any) -> Endpoint:
    async def run_kind(
        request: Request,
        body: Any,
        context: RunContextDep,
        wait: WaitQuery = RUN_DEFAULT_WAIT_S,
    ) -> dict[str, Any]:
        raw = await request.json()
        envelope = isinstance(body, RunEnvelope)
        return await runs.run(context, kind=kind, body=raw, envelope=envelope, wait_s=wait)

    run_kind.__doc__ = RUN_DOC.replace("this kind", f"kind `{kind}`")
    # The body's type is known only now: the payload model, or the envelope around it.
    run_kind.__annotations__["body"] = Annotated[body_type, Body()]
    return run_kind
