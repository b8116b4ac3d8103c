"""What other features add to a worker, without the worker importing them.

The program that builds the worker (`worker.py`) hands in `Extensions`: side
loops to run and supervise beside the worker's own (a schedule tick, a sweep),
a `FlowHook` that moves workflows on in the same transaction that records
the outcomes of their steps, and services for handlers (an HTTP client pool):
each is opened once per worker with its resources, handed to every handler in
`TaskContext.services` under its name, and closed after the last handler ended.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.lifespan import Resources
from tasks.doorbell import Bell

SideLoop = Callable[[Resources], Coroutine[Any, Any, None]]
Service = Callable[[Resources], AbstractAsyncContextManager[Any]]


class FlowHook(Protocol):
    async def advance(self, *, conn: Any, task_ids: list[uuid.UUID]) -> list[Bell]:
        """Called inside the transaction that recorded these tasks' final outcomes;
        answers the tasks it created, to ring once the transaction commits."""
        ...


@dataclass(frozen=True)
class Extensions:
    side_loops: Mapping[str, SideLoop] = field(default_factory=dict)
    flow_hook: FlowHook | None = None
    services: Mapping[str, Service] = field(default_factory=dict)
