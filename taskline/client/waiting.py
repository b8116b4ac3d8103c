"""How `wait` waits: GETs the server holds (`?wait=`) when it has them, else
polling with backoff. The same plan serves the sync and the async client."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from taskline.client.calls import ServerWait
from taskline.client.errors import WaitTimedOut
from tasks.models import TERMINAL_STATUSES
from tasks.schemas import TaskOut

POLL_FIRST_S = 0.05
POLL_FACTOR = 1.5
POLL_MAX_S = 2.0


@dataclass(frozen=True)
class Step:
    held_s: float | None = None  # GET ?wait=held_s, or else:
    sleep_s: float = 0.0  # sleep, then a plain GET


def finished(task: TaskOut) -> bool:
    return task.status in TERMINAL_STATUSES


class WaitPlan:
    def __init__(
        self,
        *,
        timeout_s: float | None,
        server: ServerWait | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self.server = server
        self._clock = clock
        self._deadline = math.inf if timeout_s is None else clock() + timeout_s
        self._delay_s = POLL_FIRST_S
        self._asked_at = 0.0

    def next_step(self, task: TaskOut) -> Step:
        """What to do about a task that has not finished; WaitTimedOut past the deadline."""
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise WaitTimedOut(task, self.timeout_s or 0.0)
        if self.server is not None:
            held_s = self.server.ask(remaining)
            if held_s > 0:
                self._asked_at = self._clock()
                return Step(held_s=held_s)
        sleep_s = min(self._delay_s, remaining)
        self._delay_s = min(self._delay_s * POLL_FACTOR, POLL_MAX_S)
        return Step(sleep_s=sleep_s)

    def answered(self, step: Step, before: TaskOut, after: TaskOut) -> None:
        """A held GET that came back early with nothing changed means the server does
        not hold answers after all (an older one ignores the parameter): poll."""
        if step.held_s is None or finished(after):
            return
        early = self._clock() - self._asked_at < step.held_s / 2
        if early and after.updated_at == before.updated_at:
            self.server = None

    def refused(self) -> None:
        """The server refused the `wait` value (422): poll from now on."""
        self.server = None
