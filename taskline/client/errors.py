"""What the client raises: one exception per kind of answer, each carrying the
HTTP status and the JSON body the API sent (`{"detail": "..."}`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tasks.schemas import TaskOut


class TasklineError(Exception):
    """Anything the client could not do. `status` is None when no answer came."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        body: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.body = body
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.detail if self.status is None else f"{self.status} {self.detail}"


class ConfigError(TasklineError, ValueError):
    """The client was set up wrong (TASKLINE_URL, an API key): nothing was sent."""


class Unreachable(TasklineError):
    """No answer: connection refused, a timeout, an unknown host."""


class Refused(TasklineError):
    """The API answered 4xx: the request was refused and nothing was written."""


class NotFound(Refused):
    """404: no such task."""


class Conflict(Refused):
    """409: the task is not in a state that allows it (cancel a finished task, ...)."""


class Invalid(Refused):
    """422: the body or a parameter is not valid; `body` may list `errors`."""


class RateLimited(Refused):
    """429: RATE_LIMIT reached; `retry_after_s` says when to try again."""


class ServerError(TasklineError):
    """The API answered 5xx."""


class Unavailable(ServerError):
    """503: a store is down or the queue is full; `retry_after_s` says when to try again."""


class WaitTimedOut(TasklineError):
    """`wait` ran out of time; `task` is the last state seen."""

    def __init__(self, task: TaskOut, timeout_s: float) -> None:
        super().__init__(f"task {task.id} is still {task.status} after {timeout_s:g}s")
        self.task = task


_BY_STATUS: dict[int, type[TasklineError]] = {
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: RateLimited,
    503: Unavailable,
}


def error_from(response: httpx.Response) -> TasklineError:
    """The exception for an answer that is not a success."""
    body = _json_or_none(response)
    kind = _BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else Refused
    return kind(
        _detail(body, response),
        status=response.status_code,
        body=body,
        retry_after_s=_retry_after_s(response),
    )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _detail(body: Any, response: httpx.Response) -> str:
    """One human line: the API's `detail`, whether a sentence or pydantic's list."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(_problem(item) for item in detail)
    return response.reason_phrase or f"HTTP {response.status_code}"


def _problem(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
    message = str(item.get("msg", "invalid"))
    return f"{where}: {message}" if where else message


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: Taskline sends seconds, another proxy may not
        return None
