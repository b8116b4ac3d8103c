"""The rules of POST /tasks/batch: each item judged as POST /tasks would judge it,
the admitted ones written together through the intake (one admission, one
statement, one ring), and an answer per item."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.config import Settings
from app.errors import StoreUnavailable
from app.http import validation_sentence
from app.ids import uuid7_many
from auth.caller import Caller
from auth.exceptions import AuthError
from tasks import service
from tasks.batch_schemas import TaskBatchItem
from tasks.exceptions import TaskError
from tasks.handlers import Registry
from tasks.intake import Intake
from tasks.schemas import task_values
from tasks.submissions import Accepted, NewTask


async def create_tasks(
    *,
    intake: Intake,
    settings: Settings,
    registry: Registry,
    items: list[dict[str, Any]],
    caller: Caller,
    client: str | None,
    return_minimal: bool = False,
) -> Result:
    """The answer, as BatchOut in plain values: one result per item, in order
    (`return_minimal`: a created or replayed item's id, not its task).
    Items that pass go to the intake as one group; what it refuses (rate limit,
    load shedding, a reused key) is refused per item with what POST /tasks would
    answer. StoreUnavailable (503 for the whole request, nothing written) if
    PostgreSQL or Redis is down."""
    prepared: list[NewTask | Result] = []

    def prepare(start: int) -> list[NewTask]:
        """The tasks of the items from `start` (a slice), each validated and built;
        the refused ones answered."""
        checked = _validate(items[start : start + SLICE_ITEMS], start)
        ids = iter(uuid7_many(sum(isinstance(one, TaskBatchItem) for one in checked)))
        made = [
            _new_task(index, one, next(ids), registry=registry, settings=settings,
                      caller=caller, client=client)
            if isinstance(one, TaskBatchItem)
            else one
            for index, one in enumerate(checked, start)
        ]  # fmt: skip
        prepared.extend(made)
        return [one for one in made if isinstance(one, NewTask)]

    committed: asyncio.Future[None] | None = None
    if len(items) > SLICE_ITEMS:  # each slice made while the one before is copied
        starts = range(0, len(items), SLICE_ITEMS)
        found, committed = await intake.submit_slices(prepare(start) for start in starts)
        outcomes = iter(found)
    else:
        tasks = prepare(0)
        outcomes = iter(await intake.submit_many(tasks) if tasks else [])
    results = [
        _result(index, next(outcomes), return_minimal) if isinstance(one, NewTask) else one
        for index, one in enumerate(prepared)
    ]
    counts = Counter(result["status"] for result in results)
    created, replayed = counts[201], counts[200]
    refused = len(results) - created - replayed
    if committed is not None:  # the answer was made while the COMMIT was out
        await committed
    return {"results": results, "created": created, "replayed": replayed, "refused": refused}


# A larger batch is validated, built and copied a slice of this many items at a
# time, each slice's COPY in flight while the next is made: 1,000 tasks took
# about 25 ms of CPU to make before their COPY (15 ms) began. Measured on
# 1,000-task batches against slices of 200, three alternated runs each: 100
# was slower, 250 and 334 faster (about 8%), 500 no better; a COPY costs the
# API round trips, and the last slice's COPY is overlapped by nothing.
SLICE_ITEMS = 250

# The answer is plain values shaped as BatchOut, serialized once by the route:
# a TaskOut model per task would cost more than the INSERT. The tests hold
# each task to what GET /tasks/{id} answers.
Result = dict[str, Any]
_ITEMS = TypeAdapter(list[TaskBatchItem])


def _validate(items: list[dict[str, Any]], start: int) -> list[TaskBatchItem | Result]:
    """Every item at once; when some do not fit, each on its own for its errors.
    `start`: the first item's index in the request."""
    try:
        return list(_ITEMS.validate_python(items))
    except ValidationError:
        pass
    checked: list[TaskBatchItem | Result] = []
    for index, raw in enumerate(items, start):
        try:
            checked.append(TaskBatchItem.model_validate(raw))
        except ValidationError as error:
            checked.append(_invalid(index, error))
    return checked


def _new_task(
    index: int,
    item: TaskBatchItem,
    task_id: uuid.UUID,
    *,
    registry: Registry,
    settings: Settings,
    caller: Caller,
    client: str | None,
) -> NewTask | Result:
    """The task an item asks for, or its refusal (422 a rule, 403 another owner)."""
    try:
        return service.new_task(
            registry=registry, settings=settings, body=item, caller=caller,
            idempotency_key=item.idempotency_key, client=client, task_id=task_id,
        )  # fmt: skip
    except (TaskError, AuthError) as error:
        return _refused(index, error.status_code, error.detail)


def _invalid(index: int, error: ValidationError) -> Result:
    """As POST /tasks's 422, each `loc` where the request holds the problem."""
    errors = [
        {"loc": ["body", "tasks", index, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_input=False)
    ]
    detail = validation_sentence(errors)
    return {"index": index, "status": 422, "error": {"detail": detail, "errors": errors}}


def _refused(index: int, status: int, detail: str, retry_after_s: float | None = None) -> Result:
    body: dict[str, Any] = {"detail": detail}
    if retry_after_s is not None:
        body["retry_after_seconds"] = max(1, math.ceil(retry_after_s))
    return {"index": index, "status": status, "error": body}


def _result(index: int, outcome: Accepted | Exception, return_minimal: bool) -> Result:
    if isinstance(outcome, StoreUnavailable):
        raise outcome  # the group was written whole or not at all: here, not at all
    if isinstance(outcome, TaskError):
        return _refused(index, outcome.status_code, outcome.detail, outcome.retry_after_s)
    if isinstance(outcome, Exception):
        raise outcome
    row, created = outcome
    status = 201 if created else 200
    if return_minimal:
        return {"index": index, "status": status, "id": str(row["id"])}  # see task_values
    return {"index": index, "status": status, "task": task_values(row)}
