"""The rules of POST /tasks/batch: each item judged as POST /tasks would judge it,
the admitted ones written together through the intake (one admission, one
INSERT, one ring), and an answer per item."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, cast

from pydantic import ValidationError

from app.config import Settings
from app.error_bodies import FieldError
from app.errors import StoreUnavailable
from app.http import validation_sentence
from auth.caller import Caller
from auth.exceptions import AuthError
from tasks import service
from tasks.batch_schemas import BatchItemError, BatchOut, BatchResult, ItemStatus, TaskBatchItem
from tasks.exceptions import TaskError
from tasks.handlers import Registry
from tasks.intake import Accepted, Intake, NewTask
from tasks.schemas import TaskOut


async def create_tasks(
    *,
    intake: Intake,
    settings: Settings,
    registry: Registry,
    items: list[dict[str, Any]],
    caller: Caller,
    client: str | None,
) -> BatchOut:
    """One result per item, in order. Items that pass go to the intake as one
    group; what it refuses (rate limit, load shedding, a reused key) is refused
    per item with what POST /tasks would answer. StoreUnavailable (503 for the
    whole request, nothing written) if PostgreSQL or Redis is down."""
    prepared = [
        _prepare(index, raw, registry=registry, settings=settings, caller=caller, client=client)
        for index, raw in enumerate(items)
    ]
    tasks = [one for one in prepared if isinstance(one, NewTask)]
    outcomes = iter(await intake.submit_many(tasks) if tasks else [])
    results = []
    for index, one in enumerate(prepared):
        if isinstance(one, NewTask):
            results.append(_result(index, next(outcomes)))
        else:
            results.append(one)
    counts = Counter(result.status for result in results)
    return BatchOut.model_construct(
        results=results,
        created=counts[201],
        replayed=counts[200],
        refused=len(results) - counts[201] - counts[200],
    )


def _prepare(
    index: int,
    raw: dict[str, Any],
    *,
    registry: Registry,
    settings: Settings,
    caller: Caller,
    client: str | None,
) -> NewTask | BatchResult:
    """The task an item asks for, or its refusal (422 invalid, 403 another owner)."""
    try:
        item = TaskBatchItem.model_validate(raw)
    except ValidationError as error:
        return _invalid(index, error)
    try:
        return service.new_task(
            registry=registry, settings=settings, body=item, caller=caller,
            idempotency_key=item.idempotency_key, client=client,
        )  # fmt: skip
    except (TaskError, AuthError) as error:
        return _refused(index, error.status_code, error.detail)


def _invalid(index: int, error: ValidationError) -> BatchResult:
    """As POST /tasks's 422, each `loc` where the request holds the problem."""
    errors = [
        {"loc": ["body", "tasks", index, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_input=False)
    ]
    body = BatchItemError(
        detail=validation_sentence(errors), errors=[FieldError(**item) for item in errors]
    )
    return BatchResult.model_construct(index=index, status=422, error=body)


def _refused(
    index: int, status: int, detail: str, retry_after_s: float | None = None
) -> BatchResult:
    body = BatchItemError(detail=detail)
    if retry_after_s is not None:
        body = BatchItemError(detail=detail, retry_after_seconds=max(1, math.ceil(retry_after_s)))
    return BatchResult.model_construct(index=index, status=cast(ItemStatus, status), error=body)


def _result(index: int, outcome: Accepted | Exception) -> BatchResult:
    if isinstance(outcome, StoreUnavailable):
        raise outcome  # the group was written whole or not at all: here, not at all
    if isinstance(outcome, TaskError):
        return _refused(index, outcome.status_code, outcome.detail, outcome.retry_after_s)
    if isinstance(outcome, Exception):
        raise outcome
    row, created = outcome
    task = TaskOut.model_validate(dict(row))
    return BatchResult.model_construct(index=index, status=201 if created else 200, task=task)
