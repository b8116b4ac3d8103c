"""The workloads, timed the same way for every system.

Each adapter (peer_NAME.py) subclasses `System` and calls `main(System)`; the
runner starts it as

    BENCH_REDIS_URL=... BENCH_DSN=... python bench/peers/peer_NAME.py WORKLOAD [--tasks N] ...

in the system's virtualenv, and reads the JSON lines it prints, one per result.
The two variables name the system's own Redis db and PostgreSQL database; its
worker inherits them. Standard library only (the probe needs psutil): it runs
in both virtualenvs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench/: rates.py

from rates import percentile, send_steadily  # noqa: E402

WARM_UP = 200  # enqueue calls before the timed ones
CHUNK = 100  # concurrent enqueue calls while filling a queue for the drain
BULK_SIZE = 1000  # jobs per call of a bulk enqueue (Taskline: POST /tasks/batch's most)
Result = dict[str, Any]


@dataclass(frozen=True)
class Options:
    workload: str
    tasks: int  # drain
    enqueue_tasks: int
    rate: float  # latency, jobs/s
    seconds: float
    wrk_seconds: float  # Taskline only: wrk's -d
    redis_url: str
    dsn: str
    work_dir: Path  # the probe's files and the worker's log


class System:
    """One system under test; subclasses fill in the first block of methods."""

    name: ClassVar[str]
    package: ClassVar[str]  # its distribution, for the version in the report

    def __init__(self, options: Options) -> None:
        self.options = options

    async def open(self) -> None:
        """Connect the client(s)."""

    async def close(self) -> None:
        """Disconnect them."""

    async def reset(self) -> None:
        """Empty this system's queue(s) in its own database or Redis db."""
        raise NotImplementedError

    async def enqueue(self, key: str) -> None:
        """One no-op job whose handler calls probe.record(key); as a user would."""
        raise NotImplementedError

    async def fill(self, count: int) -> None:
        """`count` jobs before the worker starts, the fastest way the system offers."""
        for start in range(0, count, CHUNK):
            keys = (f"d{n}" for n in range(start, min(count, start + CHUNK)))
            await asyncio.gather(*(self.enqueue(key) for key in keys))

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        """argv and extra environment of one worker process at concurrency 10."""
        raise NotImplementedError

    def version(self) -> str:
        from importlib.metadata import version

        return version(self.package)

    # The workloads -------------------------------------------------------------

    def result(self, workload: str, variant: str = "", **values: Any) -> Result:
        """One measurement; `variant` tells apart two ways of doing the same workload."""
        system = f"{self.name} {variant}".strip()
        return {"system": system, "version": self.version(), "workload": workload, **values}

    async def run_enqueue(self) -> list[Result]:
        """One client, one call at a time."""
        await self.reset()
        for n in range(WARM_UP):
            await self.enqueue(f"w{n}")
        count = self.options.enqueue_tasks
        cpu_s, began = time.process_time(), time.perf_counter()
        for n in range(count):
            await self.enqueue(f"e{n}")
        elapsed_s = time.perf_counter() - began
        client_cpu_ms = (time.process_time() - cpu_s) * 1000 / count
        await self.reset()
        return [self.result("enqueue", jobs_per_s=count / elapsed_s, client_cpu_ms=client_cpu_ms)]

    async def run_drain(self) -> list[Result]:
        """Jobs enqueued before the worker starts; timed in the worker by the probe."""
        count = self.options.tasks
        await self.reset()
        await self.fill(count)
        with self.worker("drain", count) as worker:
            progress = await wait_progress(worker, count, timeout_s=60 + count / 20)
        checked = await self.check_drained(count)
        await self.reset()
        span_s = progress["last_s"] - progress["first_s"]
        cpu_ms = (progress["last_cpu_s"] - progress["first_cpu_s"]) * 1000
        done = progress["count"]
        rate = done / span_s
        return [self.result("drain", jobs=done, jobs_per_s=rate, worker_cpu_ms=cpu_ms / done,
                            **checked)]  # fmt: skip

    async def check_drained(self, count: int) -> dict[str, Any]:
        """After the worker stopped: what the system's own store says (optional)."""
        return {}

    async def run_latency(self) -> list[Result]:
        """Enqueue -> handler start at a steady rate, after a second of warm-up
        whose jobs (waiting for the worker to start) are not counted."""
        await self.reset()
        rate = self.options.rate

        async def send(prefix: str, n: int) -> str:
            await self.enqueue(f"{prefix}{n}")
            return f"{prefix}{n}"

        with self.worker("latency", 0) as worker:
            warm = await send_steadily(lambda n: send("w", n), rate, 1.0)
            await wait_stamps(worker, set(warm), timeout_s=120)
            cpu_s, began = time.process_time(), time.perf_counter()
            sent = await send_steadily(lambda n: send("m", n), rate, self.options.seconds)
            # The caller's share of a core while sending: near 100%, this one
            # thread could not keep the rate, and the delays are its own queue.
            caller_cpu_pct = (time.process_time() - cpu_s) / (time.perf_counter() - began) * 100
            started = await wait_stamps(worker, set(sent), timeout_s=60)
        await self.reset()
        delays_ms = [(started[key] - sent[key]) * 1000 for key in sent if key in started]
        if not delays_ms:
            raise SystemExit(f"latency: none of {len(sent)} jobs started within 60 s")
        return [
            self.result(
                "latency", sent=len(sent), started=len(delays_ms),
                p50_ms=percentile(delays_ms, 0.5), p99_ms=percentile(delays_ms, 0.99),
                max_ms=max(delays_ms), caller_cpu_pct=caller_cpu_pct,
            )
        ]  # fmt: skip

    def worker(self, mode: str, expect: int) -> Worker:
        argv, env = self.worker_command()
        return Worker(argv, env, self.options.work_dir, mode, expect)


class Worker:
    """The worker as a process group of its own (some CLIs fork their workers),
    stopped with SIGTERM, then SIGKILL after 30 s."""

    def __init__(self, argv: list[str], env: dict[str, str], work_dir: Path, mode: str,
                 expect: int) -> None:  # fmt: skip
        for stale in ("stamps", "progress.json"):
            (work_dir / stale).unlink(missing_ok=True)
        self.argv, self.work_dir = argv, work_dir
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, **env, "PYTHONPATH": path, "BENCH_PROBE_DIR": str(work_dir),
                    "BENCH_PROBE_MODE": mode, "BENCH_PROBE_EXPECT": str(expect)}  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        with (self.work_dir / "worker.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=HERE, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def check(self) -> None:
        """Stop waiting for a worker that is no more."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise SystemExit(f"the worker exited with code {self.process.returncode}")

    def __exit__(self, *_: object) -> None:
        assert self.process is not None
        group = self.process.pid  # start_new_session: the group's id is the child's pid
        for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(group, sig)
                self.process.wait(wait_s)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


async def wait_progress(worker: Worker, count: int, timeout_s: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    progress: dict[str, float] = {"count": 0}
    while time.monotonic() < deadline:
        worker.check()
        text = await asyncio.to_thread(_read, worker.work_dir / "progress.json")
        if text is not None:
            progress = json.loads(text)
            if progress["count"] >= count:
                return progress
        await asyncio.sleep(0.1)
    raise SystemExit(f"{progress['count']} of {count} jobs drained in {timeout_s:.0f} s")


async def wait_stamps(worker: Worker, keys: set[str], timeout_s: float) -> dict[str, float]:
    """Each key's handler start time, once every key in `keys` has one (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    stamps: dict[str, float] = {}
    while time.monotonic() < deadline:
        worker.check()
        text = await asyncio.to_thread(_read, worker.work_dir / "stamps")
        if text is not None:
            stamps = {key: float(at) for key, at in (line.split() for line in text.splitlines())}
            if keys <= stamps.keys():
                break
        await asyncio.sleep(0.1)
    return stamps


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["enqueue", "drain", "latency", "wrk"])
    parser.add_argument("--tasks", type=int, default=20_000, help="drained jobs")
    parser.add_argument("--enqueue-tasks", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200, help="latency: jobs/s")
    parser.add_argument("--seconds", type=float, default=10, help="latency: how long")
    parser.add_argument("--wrk-seconds", type=float, default=15, help="Taskline: wrk -d")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="taskline-peer-"))
    return Options(
        args.workload, args.tasks, args.enqueue_tasks, args.rate, args.seconds, args.wrk_seconds,
        os.environ["BENCH_REDIS_URL"], os.environ.get("BENCH_DSN", ""), work_dir,
    )  # fmt: skip


def main(system_class: type[System]) -> None:
    """Run one workload and print its results as JSON lines; on failure, the
    worker's log goes to stderr."""
    options = parse_options()
    system = system_class(options)

    async def run() -> list[Result]:
        await system.open()
        try:
            results: list[Result] = await getattr(system, f"run_{options.workload}")()
            return results
        finally:
            await system.close()

    try:
        for found in asyncio.run(run()):
            print(json.dumps(found), flush=True)
    except BaseException:
        log = options.work_dir / "worker.log"
        if log.exists():
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        shutil.rmtree(options.work_dir, ignore_errors=True)
