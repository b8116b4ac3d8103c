"""Domain errors of the task feature. One handler in main.py maps them to HTTP."""

from __future__ import annotations

import uuid


class TaskError(Exception):
    status_code = 400

    def __init__(self, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


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


class InvalidPayload(TaskError):
    status_code = 422


class InvalidCursor(TaskError):
    status_code = 422

    def __init__(self) -> None:
        super().__init__("cursor is not one this API handed out")


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
