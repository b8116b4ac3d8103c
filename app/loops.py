"""Long-running loops that call the stores must stop when they are canceled.

A cancel can be lost on its way through a client library. redis-py bounds the
write of every command with `asyncio.wait_for` (its default socket_timeout is
5 s), and on Python 3.11 `wait_for` returns the result, dropping the cancel,
when the write completes in the same turn of the event loop as the cancel
arrives (fixed in 3.12). The loop then carries on as if nothing had happened
and a worker's shutdown waited 5 s for it in vain ("promoter did not stop
within 5s of being canceled"). The request is still counted on the task
(`Task.cancelling()`), so each loop checks it once a round and stops then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any


def stop_if_canceled() -> None:
    """Raise CancelledError if the running task was asked to stop and the
    request was lost before it reached this loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError("canceled while a store call was in flight")


RECANCEL_S = 0.05


async def cancel_and_wait(
    tasks: Collection[asyncio.Task[Any]], *, timeout_s: float
) -> set[asyncio.Task[Any]]:
    """Cancel these tasks and wait for them, at most `timeout_s`; the tasks still
    running then. The cancel is sent again every RECANCEL_S: one lost on its
    way (above) just before a blocking call, such as the event feed's XREAD,
    would otherwise hold the wait up to the end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left_s = deadline - loop.time()
        if left_s <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left_s))
    return pending
