"""Domain errors of the task feature. One handler in main.py maps them to HTTP."""

from __future__ import annotations

import uuid
from typing import Any


class TaskError(Exception):
    status_code = 400

    def __init__(
        self,
        detail: str,
        *,
        retry_after_s: float | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.extra = extra or {}  # more fields of the JSON body, beside `detail`
        self.headers = headers or {}


class TaskNotFound(TaskError):
    status_code = 404

    def __init__(self, task_id: uuid.UUID) -> None:
        super().__init__(f"task {task_id} not found")


class TaskConflict(TaskError):
    status_code = 409


class UnknownKind(TaskError):
    status_code = 422

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(f"unknown kind {kind!r}; known kinds: {', '.join(known)}")


class NoSuchKind(TaskError):
    status_code = 404

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(f"no handler for kind {kind!r}; known kinds: {', '.join(known)}")


class InvalidPayload(TaskError):
    status_code = 422


class InvalidCursor(TaskError):
    status_code = 422

    def __init__(self) -> None:
        super().__init__("cursor is not one this API handed out")


class InvalidLastEventId(TaskError):
    status_code = 422

    def __init__(self, value: str) -> None:
        super().__init__(f"Last-Event-ID {value[:100]!r} is not an id this stream handed out")


class IdempotencyMismatch(TaskError):
    status_code = 422

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was used with a different request body")


class Overloaded(TaskError):
    """Load shedding: too many tasks wait already; nothing was written."""

    status_code = 503

    def __init__(self, queue: str, waiting: int, limit: int) -> None:
        self.queue, self.waiting, self.limit = queue, waiting, limit
        super().__init__(
            f"{waiting} tasks are waiting in queue {queue!r} (QUEUE_MAX_PENDING is {limit});"
            " retry later",
            retry_after_s=1,
        )


class RateLimited(TaskError):
    status_code = 429

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("rate limit reached; retry later", retry_after_s=retry_after_s)


class Backlogged(TaskError):
    """POST /run: the kind's backlog is over KIND_MAX_BACKLOG; nothing was written."""

    status_code = 503

    def __init__(self, kind: str, parked: int, limit: int) -> None:
        super().__init__(
            f"{parked} tasks of kind {kind!r} wait for a slot (KIND_MAX_BACKLOG is {limit});"
            " retry later",
            retry_after_s=1,
        )


class RunFailed(TaskError):
    """POST /run: the task ended without a result (failed, canceled or expired)."""

    status_code = 502

    def __init__(self, row: Any) -> None:
        super().__init__(
            f"task {row['id']} ended {row['status']}: {row['error'] or 'no result'}",
            extra={"task_id": str(row["id"]), "status": row["status"], "errors": row["errors"]},
        )


class RunTimedOut(TaskError):
    """POST /run: no result within the wait; the task goes on."""

    status_code = 504

    def __init__(self, row: Any, wait_s: float) -> None:
        super().__init__(
            f"task {row['id']} did not finish within {wait_s:g}s; it goes on: see Location",
            extra={"task_id": str(row["id"]), "status": row["status"]},
            headers={"Location": f"/tasks/{row['id']}"},
        )
