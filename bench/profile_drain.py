"""Where does one worker spend its time draining no-op tasks?

Runs bench/drain.py's drain (N pending `echo` tasks, one `python worker.py` at
concurrency 10) with a profiler on the worker process from the moment it is up to
the moment the drain is done, and prints the top 25 functions by cumulative time
and by own time (total time in the function itself).

- cProfile (the default): the worker's main thread, where its event loop runs
  every async handler; written as a pstats file (`python -m pstats FILE`, snakeviz).
- --py-spy: sampling from outside (CPU time only, every thread), written as a
  speedscope file (open it at speedscope's site, or any speedscope viewer);
  py-spy comes from PyPI (`pip install py-spy`; `make bench-peers` puts one in
  bench/.peers-venv).

    .venv/bin/python bench/profile_drain.py [--tasks 20000] [--py-spy] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import ROOT, Stack, stack
from drain import STARTUP_S, enqueue, wait_drained

TOP = 25
# The worker under cProfile: SIGUSR1 switches it on, SIGUSR2 off and writes the file.
PROFILED_WORKER = """
import cProfile, signal, sys
sys.path.insert(0, sys.argv[2])
import worker
profile = cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
def done(*_):
    profile.disable()
    profile.dump_stats(sys.argv[1])
signal.signal(signal.SIGUSR2, done)
worker.main()
"""


def find_py_spy() -> str:
    for found in (shutil.which("py-spy"), ROOT / ".venv/bin/py-spy",
                  ROOT / "bench/.peers-venv/bin/py-spy"):  # fmt: skip
        if found and Path(found).exists():
            return str(found)
    raise SystemExit("no py-spy: `pip install py-spy`, or `make bench-peers` (bench/.peers-venv)")


@contextmanager
def profiled(found: Stack, out: Path, py_spy: str | None) -> Iterator[None]:
    """The worker, profiled from when it is up until the block ends."""
    if py_spy:
        argv = [sys.executable, str(ROOT / "worker.py")]
    else:
        argv = [sys.executable, "-c", PROFILED_WORKER, str(out), str(ROOT)]
    worker = subprocess.Popen(argv, cwd=ROOT, env=found.env())
    recorder = None
    try:
        time.sleep(STARTUP_S)  # as bench/drain.py: start-up is not what we measure
        if py_spy:
            recorder = subprocess.Popen([py_spy, "record", "--pid", str(worker.pid), "--format",
                                         "speedscope", "--output", str(out), "--rate", "200"],
                                        stdout=subprocess.DEVNULL)  # fmt: skip
        else:
            os.kill(worker.pid, signal.SIGUSR1)
        yield
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            recorder.wait(120)
        else:
            os.kill(worker.pid, signal.SIGUSR2)
            wait_for_file(out, timeout_s=120)
    finally:
        worker.terminate()
        worker.wait(60)


def wait_for_file(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            time.sleep(0.5)  # let the writer finish the file it has begun
            return
        time.sleep(0.1)
    raise SystemExit(f"the worker wrote no {path}")


def print_pstats(out: Path) -> None:
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(TOP)
    stats.sort_stats("tottime").print_stats(TOP)


def print_speedscope(out: Path) -> None:
    """The top functions by inclusive and by own samples, from py-spy's file."""
    data = json.loads(out.read_text())
    frames = [f"{f['name']} ({f.get('file', '?')}:{f.get('line', '?')})"
              for f in data["shared"]["frames"]]  # fmt: skip
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0.0  # py-spy weighs each sample by its interval, in seconds
    for profile in data["profiles"]:
        for stack_ids, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            for name in {frames[i] for i in stack_ids}:
                inclusive[name] += weight
            if stack_ids:
                own[frames[stack_ids[-1]]] += weight
    for title, counts in (("cumulative", inclusive), ("own (total time)", own)):
        print(f"\ntop {TOP} by {title}, share of {total:.2f} s of samples:")
        for name, count in counts.most_common(TOP):
            print(f"{100 * count / max(total, 1):6.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--py-spy", action="store_true", help="py-spy instead of cProfile")
    parser.add_argument("--out", type=Path, help="the profile file (default: a temp file)")
    args = parser.parse_args()
    py_spy = find_py_spy() if args.py_spy else None
    suffix = ".speedscope.json" if py_spy else ".prof"
    out = (args.out or Path(tempfile.gettempdir()) / f"taskline-drain{suffix}").resolve()
    out.unlink(missing_ok=True)
    with stack() as found, profiled(found, out, py_spy):
        asyncio.run(enqueue(found, args.tasks))
        span_s, completed = asyncio.run(wait_drained(found, args.tasks, timeout_s=600))
    rate = completed / max(span_s, 1e-9)
    print(f"drain under {'py-spy' if py_spy else 'cProfile'}: {completed}/{args.tasks} tasks "
          f"in {span_s:.2f}s = {rate:,.0f} tasks/s (slowed by the profiler)")  # fmt: skip
    (print_speedscope if py_spy else print_pstats)(out)
    print(f"\nprofile: {out}")


if __name__ == "__main__":
    main()
