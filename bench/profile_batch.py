"""Where does one API process spend a POST /tasks/batch of 1,000 tasks?

Runs bench/batch.py's workload (one client, one batch in flight, ids answered)
against one `taskline api` with py-spy sampling the API process, and prints
its CPU per task by phase of the request, beside the batch's wall time and the
time of the same INSERT (a COPY) alone. One batch at a time, the API's CPU
comes on top of PostgreSQL's COPY, but for what the intake makes while
PostgreSQL copies (part of "insert").

Phases, by the innermost of these functions on a sample's stack:
- validate: the items (tasks/batch.py `_validate`);
- build: each item's NewTask and id (`_new_task`, `uuid7_many`);
- insert: the COPY's records, asyncpg's encoding of them, and what the intake
  makes while PostgreSQL copies (the rows answered, the ring); a large batch's
  items are validated and built inside it, a slice at a time, but count as
  validate and build;
- ring: sending the doorbell and the event entry (tasks/intake.py `_ring`);
- answer: each item's result and the JSON (`_result`, `to_json`);
- http: uvicorn, Starlette and FastAPI: reading the request, the JSON body.

    .venv/bin/python bench/profile_batch.py [--tasks 60000] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

from batch import insert_run, requests, send_batches
from common import free_port, stack, start_api
from enqueue import truncate
from latency import wait_ready
from profile_drain import find_py_spy, print_speedscope

# (phase, a function's name and file as py-spy names it), innermost first wins
PHASES = (
    ("ring", "_ring", "tasks/intake.py"),
    ("insert", "insert_tasks", "tasks/repository/inserts.py"),
    ("insert", "copy_slices", "tasks/repository/inserts.py"),  # a large batch, a slice at a time
    # the COPY runs as a task of its own (its rows are encoded there): no caller on its stack
    ("insert", "copy_records_to_table", "asyncpg/connection.py"),
    ("answer", "_result", "tasks/batch.py"),
    ("answer", "create_tasks", "tasks/batch_router.py"),
    ("validate", "_validate", "tasks/batch.py"),
    ("build", "_new_task", "tasks/batch.py"),
    ("build", "uuid7_many", "app/ids.py"),
    ("intake", "_run", "tasks/intake.py"),
)


def phase_of(stack: list[dict[str, str]]) -> str:
    for frame in reversed(stack):
        for phase, name, file in PHASES:
            named = frame["name"]  # py-spy names a method Class.method
            if (named == name or named.endswith(f".{name}")) and frame.get("file", "").endswith(
                file
            ):
                return phase
    return "http"


def cpu_by_phase(out: Path) -> tuple[Counter[str], float]:
    """Seconds of samples by phase, and in all, from py-spy's speedscope file."""
    data = json.loads(out.read_text())
    frames = data["shared"]["frames"]
    seconds: Counter[str] = Counter()
    for profile in data["profiles"]:
        for stack_ids, weight in zip(profile["samples"], profile["weights"], strict=True):
            seconds[phase_of([frames[i] for i in stack_ids])] += weight
    return seconds, sum(seconds.values())


async def sent_batches(port: int, batches: list[bytes]) -> float:
    """Seconds the batches took, one in flight."""
    began = time.perf_counter()
    await send_batches(port, batches, 1)
    return time.perf_counter() - began


def profiled_batches(port: int, pid: int, batches: list[bytes], out: Path) -> float:
    """The batches sent with py-spy on the API; seconds they took."""
    asyncio.run(wait_ready(f"http://127.0.0.1:{port}"))
    asyncio.run(send_batches(port, batches[:3], 1))  # warm-up, not sampled
    recorder = subprocess.Popen([find_py_spy(), "record", "--pid", str(pid), "--format",
                                 "speedscope", "--output", str(out), "--rate", "500",
                                 "--nonblocking"], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(1.0)  # py-spy attached
        return asyncio.run(sent_batches(port, batches))
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        recorder.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60_000)
    parser.add_argument("--out", type=Path, help="py-spy's speedscope file (default: a temp file)")
    args = parser.parse_args()
    out = (args.out or Path(tempfile.gettempdir()) / "taskline-batch.speedscope.json").resolve()
    out.unlink(missing_ok=True)
    batches = requests(args.tasks, 1000)
    with stack() as found:
        alone = asyncio.run(insert_run(found, args.tasks, 1000))
        asyncio.run(truncate(found.dsn))
        found = replace(found, namespace=f"{found.namespace}:{uuid.uuid4().hex[:6]}")
        port = free_port()
        api = start_api(found, port)
        try:
            elapsed_s = profiled_batches(port, api.pid, batches, out)
        finally:
            api.terminate()
            api.wait(60)
    per_batch_ms = elapsed_s / len(batches) * 1000
    seconds, total_s = cpu_by_phase(out)
    print(f"POST /tasks/batch under py-spy: {args.tasks:,} tasks = {args.tasks / elapsed_s:,.0f}"
          f" tasks/s, {per_batch_ms:.1f} ms a batch of 1,000 (slowed by the sampling);"
          f" the INSERT alone: {alone.per_s:,.0f} tasks/s,"
          f" {alone.elapsed_s / len(batches) * 1000:.1f} ms a batch")  # fmt: skip
    print(f"API CPU sampled: {total_s * 1e6 / args.tasks:.1f} µs per task; by phase:")
    for phase, spent_s in seconds.most_common():
        print(f"  {phase:9s} {spent_s * 1e6 / args.tasks:5.1f} µs per task"
              f"  ({100 * spent_s / max(total_s, 1e-9):4.1f}%)")  # fmt: skip
    print_speedscope(out)
    print(f"\nprofile: {out}")


if __name__ == "__main__":
    main()
