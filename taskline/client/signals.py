"""Stopping a consumer on SIGTERM and SIGINT: the handlers only set an event,
and the handlers that were there before come back on exit."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(set_stop: Callable[[], object]) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT call `set_stop` and nothing else. Only the
    main thread can take signals: elsewhere nothing is installed (stop it with
    its `stop` event)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        set_stop()

    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
    try:
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, on_signal)
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler not installed from Python, which cannot be put back.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
