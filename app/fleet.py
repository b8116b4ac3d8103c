"""`taskline worker --processes N`: N worker processes under one supervisor.

The children share nothing but the stores: each is a whole worker with its own
pools, started from the command line it is handed (app/ names no command) with
WORKER_PROCESSES=1. Each runs in a session of its own, so a Ctrl-C at the
terminal reaches the supervisor alone, which passes SIGTERM and SIGINT on to
every child: each drains as a worker alone does, and a second signal makes
them exit at once. Should the supervisor be killed, its children are sent
SIGTERM by the kernel (Linux) and drain all the same.

A child that exits while no stop was asked for is started again after a pause
that doubles with each quick death (0.5 s up to 30 s; back to 0.5 s once a
child has run for a minute), so a crash loop does not spin. After a stop the
supervisor waits for every child, and exits 0 when each exited 0, else 1.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from app.embedded import die_with_parent

log = logging.getLogger("taskline.fleet")

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_S = 0.1
RESTART_BASE_S = 0.5
RESTART_CAP_S = 30.0
STABLE_S = 60.0  # a child that ran this long before it died is restarted at once again


def restart_delay_s(quick_deaths: int) -> float:
    """The pause before starting a child again after its `quick_deaths`-th death in a row."""
    return min(RESTART_CAP_S, RESTART_BASE_S * 2.0 ** max(0, quick_deaths - 1))


def stop_timeout_s(shutdown_timeout_s: float) -> float:
    """How long a stopping child may take before it is killed: its handlers get
    WORKER_SHUTDOWN_TIMEOUT, then its last outcomes as long again, plus the
    few seconds its loops and pools take to close."""
    return 2 * shutdown_timeout_s + 30


@dataclass
class Child:
    number: int
    process: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0
    quick_deaths: int = 0
    restart_at_s: float = 0.0
    last_code: int | None = None  # of its latest process, once exited


class Fleet:
    def __init__(self, command: Sequence[str], count: int, *, stop_timeout_s: float) -> None:
        self.command = list(command)
        self.children = [Child(number) for number in range(1, count + 1)]
        self.stop_timeout_s = stop_timeout_s
        self._received: list[int] = []  # signals not yet passed on
        self._wake = threading.Event()

    def run(self) -> int:
        """Start the children, keep them running until a signal, then stop them."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in EXIT_SIGNALS}
        try:
            log.info("starting %d worker processes", len(self.children))
            while not self._received:
                self._tend()
                self._wake.wait(POLL_S)
            return self._stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only noted here; the loop passes it on (never halfway through a start).
        self._received.append(signum)
        self._wake.set()

    def _tend(self) -> None:
        now_s = time.monotonic()
        for child in self.children:
            if child.process is None:
                if now_s >= child.restart_at_s:
                    self._start(child)
            elif child.process.poll() is not None:
                self._died(child, now_s)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            self.command,
            env={**os.environ, "WORKER_PROCESSES": "1"},
            start_new_session=True,  # Ctrl-C reaches the supervisor, which passes it on
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        child.started_s = time.monotonic()
        log.info("worker process %d started (pid %d)", child.number, child.process.pid)

    def _died(self, child: Child, now_s: float) -> None:
        assert child.process is not None
        child.last_code = child.process.returncode
        ran_s = now_s - child.started_s
        child.quick_deaths = 1 if ran_s >= STABLE_S else child.quick_deaths + 1
        delay_s = restart_delay_s(child.quick_deaths)
        log.error("worker process %d (pid %d) %s after %.1fs; starting it again in %.1fs",
                  child.number, child.process.pid, _how(child.last_code), ran_s,
                  delay_s)  # fmt: skip
        child.process = None
        child.restart_at_s = now_s + delay_s

    def _stop(self) -> int:
        log.info("stopping: passing the signal on to %d worker processes", len(self._alive()))
        deadline_s = time.monotonic() + self.stop_timeout_s
        while self._alive():
            self._pass_on()
            if time.monotonic() > deadline_s:
                self._kill_late()
            self._wake.wait(POLL_S)
        return self._verdict()

    def _alive(self) -> list[Child]:
        return [c for c in self.children if c.process is not None and c.process.poll() is None]

    def _pass_on(self) -> None:
        self._wake.clear()
        while self._received:
            signum = self._received.pop(0)
            for child in self._alive():
                assert child.process is not None
                child.process.send_signal(signum)

    def _kill_late(self) -> None:
        for child in self._alive():
            assert child.process is not None
            log.error("worker process %d (pid %d) did not stop within %.0fs; killing it",
                      child.number, child.process.pid, self.stop_timeout_s)  # fmt: skip
            child.process.kill()
            child.process.wait()

    def _verdict(self) -> int:
        failed = 0
        for child in self.children:
            if child.process is not None:
                child.last_code = child.process.returncode
            if child.last_code != 0:
                failed += 1
                log.error("worker process %d %s", child.number, _how(child.last_code))
        log.info("worker processes stopped: %d of %d cleanly",
                 len(self.children) - failed, len(self.children))  # fmt: skip
        return 1 if failed else 0


def _how(code: int | None) -> str:
    if code is None:
        return "never started"
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def run_fleet(command: Sequence[str], count: int, *, shutdown_timeout_s: float) -> int:
    """Run `count` copies of `command` (one worker each) until SIGTERM or SIGINT."""
    fleet = Fleet(command, count, stop_timeout_s=stop_timeout_s(shutdown_timeout_s))
    return fleet.run()
