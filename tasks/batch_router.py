"""POST /tasks/batch: many tasks in one request, an answer per item."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic_core import to_json

from app.error_bodies import error_responses
from auth.dependencies import AUTH_RESPONSES
from tasks import batch
from tasks.batch_schemas import BATCH_MAX_BODY_BYTES, MAX_BATCH_ITEMS, BatchOut, TaskBatchIn
from tasks.dependencies import ReturnMinimalDep, WriterDep

batch_router = APIRouter(prefix="/tasks", tags=["tasks"], responses=AUTH_RESPONSES)

_ANSWERED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One result per item, in order.",
        "headers": {
            "Preference-Applied": {
                "description": "`return=minimal` when the request asked for it: each"
                " created or replayed item carries its `id`, not its `task`.",
                "schema": {"type": "string"},
            }
        },
    }
}


@batch_router.post(
    "/batch",
    response_model=BatchOut,
    responses=_ANSWERED
    | error_responses(
        (413, f"The request body is over {BATCH_MAX_BODY_BYTES} bytes (this route's limit)."),
        (
            422,
            f"The envelope is invalid: `tasks` missing, not a list, empty, over"
            f" {MAX_BATCH_ITEMS} items, or an item that is not a JSON object; nothing written."
            " An invalid item is answered in its own result instead.",
        ),
        (503, "PostgreSQL or Redis is unreachable; nothing was written."),
    ),
    summary="Create many tasks",
)
async def create_tasks(
    body: TaskBatchIn, writer: WriterDep, return_minimal: ReturnMinimalDep
) -> Response:
    """Each item is a POST /tasks body (plus its own `idempotency_key`) and is
    judged as POST /tasks would judge it; the answer is 200 with one result per
    item, in order: its status (201, 200 for a replayed key, 403, 422, 429, 503)
    and the task or the error; with `Prefer: return=minimal`, the task's id
    instead of the task (less to build, send and read). The admitted items are
    written together: one admission (each takes a RATE_LIMIT token and a place
    under QUEUE_MAX_PENDING, in order, so a nearly full queue takes the first
    items and refuses the rest), one statement (an INSERT, or a COPY from 100
    items without keys), one ring of the doorbell. A store that is down fails
    the whole request (503) and writes nothing. Tasks belong to the key's owner;
    an item naming another owner is refused (403) unless the key is admin."""
    answer = await batch.create_tasks(
        intake=writer.intake, settings=writer.resources.settings, registry=writer.registry,
        items=body.tasks, caller=writer.caller, client=writer.client,
        return_minimal=return_minimal,
    )  # fmt: skip
    # Serialized once, here: FastAPI would validate 1,000 tasks again first.
    headers = {"Preference-Applied": "return=minimal"} if return_minimal else None
    return Response(to_json(answer), media_type="application/json", headers=headers)
