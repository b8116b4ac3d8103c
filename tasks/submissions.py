"""What the intake takes and how it answers: a NewTask, and the outcome of each
task submitted, alone (a future), in a group (POST /tasks/batch) or in a
stream (a large POST /tasks/batch, made a slice at a time as it is copied);
and the ring of a batch, made as its rows are."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from app.errors import StoreUnavailable

if TYPE_CHECKING:
    from tasks.doorbell import Gathered


# Not frozen: a frozen dataclass sets each field through object.__setattr__,
# 3.0 µs a task against 0.6, on every POST and 1,000 times a batch. Nothing
# changes a NewTask once made; `replace` makes another.
@dataclass(slots=True)
class NewTask:
    id: uuid.UUID
    kind: str
    message: str
    payload: dict[str, Any]
    max_attempts: int
    timeout_seconds: float
    run_at: datetime | None = None  # None: now
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    queue: str = "default"
    priority: int = 5
    owner: str | None = None
    client: str | None = None  # whose RATE_LIMIT bucket pays for it
    fair_level: int = 0  # set by the intake (FAIRNESS=levels)
    workflow_id: uuid.UUID | None = None  # a step of a workflow (workflows/)
    inputs: dict[str, Any] | None = None  # what the steps before it handed on


# What a request gets: the row and whether it was created now (201) or replayed (200).
Accepted = tuple[Any, bool]
Settled = dict[uuid.UUID, Accepted | Exception]


class Outcome(Protocol):
    """Where a task's outcome goes: a request's future, or a place in a group."""

    def done(self) -> bool: ...
    def set_result(self, result: Accepted, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


Entry = tuple[NewTask, Outcome]


class Group:
    """The outcomes of tasks submitted together, and one future for them all:
    a future per task would cost the event loop a callback per task."""

    def __init__(self, size: int) -> None:
        self.outcomes: list[Accepted | Exception | None] = [None] * size
        self.left = size
        self.all_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(self, index: int, outcome: Accepted | Exception) -> None:
        if self.outcomes[index] is None:
            self.outcomes[index] = outcome
            self.left -= 1
            if self.left == 0 and not self.all_done.done():
                self.all_done.set_result(None)


class Member:
    """One task's place in a Group, answering as its future would."""

    __slots__ = ("group", "index")

    def __init__(self, group: Group, index: int) -> None:
        self.group, self.index = group, index

    def done(self) -> bool:
        return self.group.outcomes[self.index] is not None

    def set_result(self, result: Accepted, /) -> None:
        self.group.settle(self.index, result)

    def set_exception(self, exception: BaseException, /) -> None:
        error = exception
        if not isinstance(error, Exception):  # never set by the intake; a 503 if it were
            error = StoreUnavailable("api", f"the intake stopped: {exception!r}")
        self.group.settle(self.index, error)


class Answers:
    """A written batch's answers: each request its row or its refusal, given
    at the first call."""

    __slots__ = ("batch", "settled")

    def __init__(self, batch: list[Entry], settled: Settled) -> None:
        self.batch, self.settled = batch, settled

    def __call__(self) -> None:
        batch, self.batch = self.batch, []
        for task, future in batch:
            result = self.settled[task.id]
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class Stream:
    """Tasks submitted as lazy slices (Intake.submit_slices): each slice is made
    when the intake pulls it, while PostgreSQL copies the one before. Settled
    once, all together, in the order the tasks were made, before the COMMIT
    (so the submitter makes its answer while the COMMIT is out), then committed."""

    __slots__ = ("committed", "settled", "slices", "tasks")

    def __init__(self, slices: Iterator[Sequence[NewTask]]) -> None:
        self.slices = slices
        self.tasks: list[NewTask] = []  # those made so far, in order
        loop = asyncio.get_running_loop()
        # Each task's outcome once every statement ran; final once `committed` is set.
        self.settled: asyncio.Future[list[Accepted | Exception]] = loop.create_future()
        self.committed: asyncio.Future[None] = loop.create_future()

    def pull(self, keyed: list[NewTask]) -> Iterator[list[NewTask]]:
        """Each slice's tasks without an idempotency key, to copy; those with one
        are added to `keyed` (they need an INSERT that checks the key)."""
        for tasks in self.slices:
            self.tasks += tasks
            keyed += [task for task in tasks if task.idempotency_key is not None]
            yield [task for task in tasks if task.idempotency_key is None]

    def settle(self, settled: Settled) -> None:
        if not self.settled.done():
            self.settled.set_result([settled[task.id] for task in self.tasks])

    def commit(self) -> None:
        if not self.committed.done():
            self.committed.set_result(None)

    def fail(self, error: Exception) -> None:
        """Heard where the submitter waits: the outcomes, else the COMMIT."""
        if not self.settled.done():
            self.settled.set_exception(error)
        elif not self.committed.done():
            self.committed.set_exception(error)


class Ring:
    """One batch's ring, made as its rows are copied (a slice at a time), else
    once they are stored."""

    __slots__ = ("gather", "gathered", "made_any")

    def __init__(self, gather: Callable[[list[Any], Gathered | None], Gathered | None]) -> None:
        self.gather = gather  # Intake._gather
        self.gathered: Gathered | None = None
        self.made_any = False

    def add(self, rows: list[Any]) -> None:
        self.gathered = self.gather(rows, self.gathered)
        self.made_any = True

    def made(self, rows: list[Any]) -> Gathered | None:
        """The ring of all `rows`: what was added, else made now."""
        return self.gathered if self.made_any else self.gather(rows, None)
