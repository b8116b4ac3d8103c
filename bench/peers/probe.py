"""What every system's no-op handler calls: `record(key)`, inside the worker process.

Set by the harness through the environment of the worker it starts:
BENCH_PROBE_MODE=latency appends `key start_time` to BENCH_PROBE_DIR/stamps (one
O_APPEND write, whole lines even from threads or processes); BENCH_PROBE_MODE=drain
counts the handled jobs and writes BENCH_PROBE_DIR/progress.json every FLUSH jobs
and at BENCH_PROBE_EXPECT: the count, and the wall clock and this process's CPU time
(psutil) at the first job's start and at the latest one's. The drain is timed
inside the worker, so neither its start-up nor its shutdown counts.

Standard library and psutil only: it runs in the peers' virtualenv and in the project's.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil

FLUSH = 1000

_dir = Path(os.environ.get("BENCH_PROBE_DIR", "."))
_mode = os.environ.get("BENCH_PROBE_MODE", "")
_expect = int(os.environ.get("BENCH_PROBE_EXPECT", "0"))
_lock = threading.Lock()
_process = psutil.Process()
_stamps: int | None = None
_count = 0
_first: tuple[float, float] = (0.0, 0.0)


def _cpu_s() -> float:
    times = _process.cpu_times()
    return float(times.user + times.system)


def _write_progress(last: tuple[float, float]) -> None:
    progress = {"count": _count, "first_s": _first[0], "first_cpu_s": _first[1]}
    progress |= {"last_s": last[0], "last_cpu_s": last[1]}
    scratch = _dir / f"progress.json.{os.getpid()}"
    scratch.write_text(json.dumps(progress))
    os.replace(scratch, _dir / "progress.json")


def _stamp(key: str, started_s: float) -> None:
    global _stamps
    if _stamps is None:
        _stamps = os.open(_dir / "stamps", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_stamps, f"{key} {started_s!r}\n".encode())


def record(key: str) -> None:
    global _count, _first
    started_s = time.time()
    if _mode == "latency":
        _stamp(key, started_s)
    elif _mode == "drain":
        with _lock:
            _count += 1
            if _count == 1:
                _first = (started_s, _cpu_s())
            if _count % FLUSH == 0 or _count == _expect:
                _write_progress((time.time(), _cpu_s()))
