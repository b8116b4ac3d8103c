"""Hearing of the shutdown at once, for requests that would otherwise hold it up.

On SIGTERM or SIGINT uvicorn stops accepting connections, then waits for the
open requests to end before it runs the lifespan's shutdown. A request that
follows an event stream, or waits for a task, could hold that up for minutes.
`on_exit_signal` runs a callback as soon as the signal arrives (then passes
the signal on to whoever handled it before), so such requests end now.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

EXIT_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_exit_signal(callback: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM first run `callback` on the running loop."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        before = previous[signum]
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:  # what the signal would have done without us
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in EXIT_SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, before in previous.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, before)
