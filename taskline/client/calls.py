"""Every API call the client makes, as a value: what to send and how to read the
answer. `Client` and `AsyncClient` only move these over HTTP, so a new endpoint
is one function here and one line in each client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from taskline.client.errors import TasklineError, error_from
from tasks.batch_schemas import BatchOut
from tasks.models import TaskStatus
from tasks.schemas import QueueOut, QueuesOut, TaskCreate, TaskOut, TaskPage, WorkerOut, WorkersOut
from topics.message_schemas import (
    AckIn,
    ExtendIn,
    ExtendOut,
    LeasedMessage,
    LeaseIn,
    LeaseOut,
    MessageBatchIn,
    MessageIn,
    NackIn,
    PublishOut,
)
from topics.schemas import QueueResource

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

TaskId = uuid.UUID | str
# Without a `maximum` in the server's OpenAPI, one held GET asks for at most this.
DEFAULT_SERVER_WAIT_S = 20.0


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, str | int | float] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    held_s: float = 0.0  # the server may hold the answer this long: added to the read timeout


def expect(model: type[M]) -> Callable[[httpx.Response], M]:
    """Read a success as `model`; anything else becomes the matching exception."""

    def read(response: httpx.Response) -> M:
        if not response.is_success:
            raise error_from(response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as error:
            raise TasklineError(
                f"the answer is not a {model.__name__}: {error.error_count()} problem(s)",
                status=response.status_code,
            ) from error

    return read


def _task_path(task_id: TaskId, suffix: str = "") -> str:
    # Quoted whole: an id with a slash in it names no other route.
    return f"/tasks/{quote(str(task_id), safe='')}{suffix}"


def create_task(body: TaskCreate | Mapping[str, Any], idempotency_key: str | None) -> Call[TaskOut]:
    """A `TaskCreate` was checked here already; a mapping is sent as it is, for the
    server to judge (what `taskline submit --from-file` does with each line)."""
    if isinstance(body, TaskCreate):
        payload: Any = body.model_dump(mode="json", exclude_none=True)
    else:
        payload = dict(body)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call("POST", "/tasks", expect(TaskOut), json=payload, headers=headers)


BatchItemIn = TaskCreate | Mapping[str, Any]


def create_tasks(items: Iterable[BatchItemIn], *, ids_only: bool = False) -> Call[BatchOut]:
    """POST /tasks/batch. A model was checked here already (a TaskBatchItem carries
    its idempotency_key); a mapping is sent as it is, for the server to judge.
    `ids_only`: Prefer: return=minimal, each created item's `id` instead of its `task`."""
    bodies = [
        item.model_dump(mode="json", exclude_none=True) if isinstance(item, TaskCreate)
        else dict(item)
        for item in items
    ]  # fmt: skip
    headers = {"Prefer": "return=minimal"} if ids_only else {}
    return Call("POST", "/tasks/batch", expect(BatchOut), json={"tasks": bodies}, headers=headers)


def get_task(task_id: TaskId, *, wait_s: float | None = None) -> Call[TaskOut]:
    """With `wait_s`, the server holds the answer until the task ends or the time is up."""
    if wait_s is None:
        return Call("GET", _task_path(task_id), expect(TaskOut))
    params: dict[str, str | int | float] = {"wait": int(wait_s) if wait_s.is_integer() else wait_s}
    return Call("GET", _task_path(task_id), expect(TaskOut), params=params, held_s=wait_s)


def cancel(task_id: TaskId) -> Call[TaskOut]:
    return Call("PATCH", _task_path(task_id), expect(TaskOut), json={"status": "canceled"})


def retry(task_id: TaskId) -> Call[TaskOut]:
    return Call("POST", _task_path(task_id, "/retry"), expect(TaskOut))


def list_page(
    *,
    status: TaskStatus | str | None = None,
    kind: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Call[TaskPage]:
    params: dict[str, str | int | float] = {"limit": limit}
    if status is not None:
        params["status"] = str(status)
    if kind is not None:
        params["kind"] = kind
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", "/tasks", expect(TaskPage), params=params)


def list_queues() -> Call[list[QueueOut]]:
    read_page = expect(QueuesOut)
    return Call("GET", "/queues", lambda response: read_page(response).queues)


def list_workers() -> Call[list[WorkerOut]]:
    read_page = expect(WorkersOut)
    return Call("GET", "/workers", lambda response: read_page(response).workers)


# Messages ---------------------------------------------------------------------


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def _body(model: BaseModel) -> Any:
    return model.model_dump(mode="json", exclude_unset=True)


def _no_content(response: httpx.Response) -> None:
    if not response.is_success:
        raise error_from(response)


def publish(topic: str, body: MessageIn | MessageBatchIn) -> Call[PublishOut]:
    return Call("POST", _path("topics", topic, "messages"), expect(PublishOut), json=_body(body))


def put(queue: str, body: MessageIn | MessageBatchIn) -> Call[PublishOut]:
    return Call("POST", _path("queues", queue, "messages"), expect(PublishOut), json=_body(body))


def get_queue(queue: str) -> Call[QueueResource]:
    return Call("GET", _path("queues", queue), expect(QueueResource))


def lease(queue: str, body: LeaseIn) -> Call[list[LeasedMessage]]:
    """Held by the server up to `wait_seconds`: added to the read timeout."""
    read_page = expect(LeaseOut)
    return Call(
        "POST",
        _path("queues", queue, "lease"),
        lambda response: read_page(response).messages,
        json=body.model_dump(mode="json"),
        held_s=body.wait_seconds,
    )


def ack(message_id: TaskId, body: AckIn) -> Call[None]:
    return Call("POST", _path("messages", str(message_id), "ack"), _no_content, json=_body(body))


def nack(message_id: TaskId, body: NackIn) -> Call[None]:
    return Call("POST", _path("messages", str(message_id), "nack"), _no_content, json=_body(body))


def extend(message_id: TaskId, body: ExtendIn) -> Call[ExtendOut]:
    path = _path("messages", str(message_id), "extend")
    return Call("POST", path, expect(ExtendOut), json=_body(body))


_SCHEMA = TypeAdapter(dict[str, Any])


@dataclass(frozen=True)
class ServerWait:
    """What the server's `?wait=` takes: at most `max_s`, whole seconds or not."""

    max_s: float
    whole_seconds: bool = False

    def ask(self, seconds: float) -> float:
        """What to ask for: at most `seconds`, within the server's bounds (0 if below them)."""
        wanted = min(seconds, self.max_s)
        return float(int(wanted)) if self.whole_seconds else round(wanted, 3)


def server_wait() -> Call[ServerWait | None]:
    """Whether `GET /tasks/{id}` takes `?wait=` (its OpenAPI lists it), and how; None
    when it does not, or when the OpenAPI cannot be read."""
    return Call("GET", "/openapi.json", _read_server_wait)


def _read_server_wait(response: httpx.Response) -> ServerWait | None:
    if not response.is_success:
        return None
    try:
        document = _SCHEMA.validate_json(response.content)
        parameters = document["paths"]["/tasks/{task_id}"]["get"].get("parameters", [])
    except (ValidationError, KeyError, TypeError, AttributeError):
        return None
    for parameter in parameters:
        if isinstance(parameter, dict) and parameter.get("name") == "wait":
            schemas = _options(parameter.get("schema"))
            limits = [found for one in schemas if (found := _maximum(one)) is not None]
            return ServerWait(
                max_s=min(limits, default=DEFAULT_SERVER_WAIT_S),
                whole_seconds=any(one.get("type") == "integer" for one in schemas),
            )
    return None


def _options(schema: Any) -> list[dict[str, Any]]:
    """A parameter's schema, or each of its `anyOf` options but null (an optional number)."""
    if not isinstance(schema, dict):
        return []
    options = [
        one
        for one in schema.get("anyOf", [])
        if isinstance(one, dict) and one.get("type") != "null"
    ]
    return options or [schema]


def _maximum(schema: dict[str, Any]) -> float | None:
    maximum = schema.get("maximum")
    if isinstance(maximum, int | float) and maximum > 0:
        return float(maximum)
    below = schema.get("exclusiveMaximum")
    if isinstance(below, int | float) and below > 1:
        return float(below) - 1 if schema.get("type") == "integer" else float(below) - 0.01
    return None
