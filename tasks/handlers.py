"""The handler registry: a task's `kind` names the function that runs it.

A project adds handlers with the `handler` decorator in a module named by the
`TASKLINE_HANDLERS` setting:

    from tasks.handlers import TaskContext, handler

    @handler("resize")
    async def resize(task: TaskContext) -> dict:
        ...

Async handlers run on the worker's event loop; plain functions run in a thread
pool so they never block it. The return value is stored as the task's JSON result.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

HandlerFunc = Callable[["TaskContext"], Awaitable[Any]] | Callable[["TaskContext"], Any]


@dataclass(frozen=True)
class TaskContext:
    """What a handler gets: the task as it was claimed. A workflow step also gets
    the result of the step before it (`parent_result`), or, after a group, every
    member's outcome in order (`group_results`: task_id, status, result, error).
    `services` holds what the worker opened for its handlers (an HTTP client
    pool: see tasks/worker/hooks.py), by name."""

    id: UUID
    kind: str
    message: str
    payload: dict[str, Any]
    attempt: int
    workflow_id: UUID | None = None
    parent_result: Any = None
    group_results: list[dict[str, Any]] | None = None
    max_attempts: int = 1
    services: Mapping[str, Any] = field(default_factory=dict)

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


class NoRetry(Exception):
    """Raised by a handler: this attempt failed and retrying cannot help (or would
    do harm), so the task fails now, whatever attempts it has left."""


@dataclass(frozen=True)
class Schedule:
    """A periodic schedule declared in code (the `schedules` list of a handlers
    module, or `@handler(kind, schedule=...)`); workers store it at start.
    Give `cron` (5 fields, in `timezone`) or `every_seconds`; see README "Schedules"."""

    id: str
    kind: str
    cron: str | None = None
    every_seconds: int | None = None
    timezone: str = "UTC"
    payload: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    priority: int | None = None
    queue: str | None = None
    catch_up: str = "latest"


@dataclass(frozen=True)
class Handler:
    kind: str
    func: HandlerFunc
    payload_model: type[BaseModel] | None = None
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", asyncio.iscoroutinefunction(self.func))

    def check_payload(
        self, payload: dict[str, Any], context: Mapping[str, Any] | None = None
    ) -> str | None:
        """None when the payload fits the handler, else why not. `context` reaches the
        payload model's validators (the API passes {"settings": Settings})."""
        if self.payload_model is None:
            return None
        try:
            self.payload_model.model_validate(payload, context=context)
        except ValidationError as error:
            first = error.errors()[0]
            where = "".join(f".{part}" for part in first["loc"])  # none: the whole payload
            return f"payload{where}: {first['msg']}"
        return None


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._schedules: dict[str, Schedule] = {}

    def add(self, kind: str, func: HandlerFunc, payload: type[BaseModel] | None = None) -> None:
        if kind in self._handlers and self._handlers[kind].func is not func:
            raise ValueError(f"a handler for kind {kind!r} is already registered")
        self._handlers[kind] = Handler(kind, func, payload)

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def add_schedule(self, schedule: Schedule) -> None:
        known = self._schedules.get(schedule.id)
        if known is not None and known != schedule:
            raise ValueError(f"a schedule with id {schedule.id!r} is already declared")
        self._schedules[schedule.id] = schedule

    def schedules(self) -> list[Schedule]:
        return [self._schedules[name] for name in sorted(self._schedules)]


registry = Registry()


def handler(
    kind: str, *, payload: type[BaseModel] | None = None, schedule: str | None = None
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register `func` as the handler of `kind`; `payload` validates POSTed payloads;
    `schedule` (a cron expression, UTC) also runs it periodically, as schedule `kind`."""

    def register(func: HandlerFunc) -> HandlerFunc:
        registry.add(kind, func, payload)
        if schedule is not None:
            registry.add_schedule(Schedule(id=kind, kind=kind, cron=schedule))
        return func

    return register


def load_handlers(modules: tuple[str, ...]) -> Registry:
    """Import the modules named by `TASKLINE_HANDLERS`; their decorators register,
    and a module's `schedules` list (of `Schedule`) declares schedules."""
    for name in modules:
        module = importlib.import_module(name)
        for declared in getattr(module, "schedules", ()):
            if not isinstance(declared, Schedule):
                raise TypeError(f"{name}.schedules must hold tasks.handlers.Schedule items")
            registry.add_schedule(declared)
    return registry


# Built-in handlers ---------------------------------------------------------


@handler("echo")
async def echo(task: TaskContext) -> dict[str, Any]:
    return {"message": task.message}


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=3600, description="How long to sleep, at most an hour.")


@handler("sleep", payload=SleepPayload)
async def sleep(task: TaskContext) -> dict[str, Any]:
    seconds = SleepPayload.model_validate(task.payload).seconds
    await asyncio.sleep(seconds)
    return {"slept": seconds}
