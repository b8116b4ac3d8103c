"""Taskline beside Dramatiq, SAQ, Celery and PgQueuer: the same workloads on the
same servers, in one run.

One embedded PostgreSQL and one Valkey (bench/common.py) serve every system, each
in its own database or Redis db. Every round runs each workload for every system
(the order turns each round, so that a change in the machine's load falls on all
of them), then wrk against Taskline's API. The report takes each measure's median
and range over the rounds: bench/results/peers-DATE.md, and its chart peers-DATE.png
(drawn with the peers' virtualenv's matplotlib).

    make bench-peers                  # makes bench/.peers-venv, then runs this
    .venv/bin/python bench/peers/run.py [--rounds 3] [--tasks 20000] [--seconds 10] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import asyncpg  # noqa: E402
import report  # noqa: E402
from common import Stack, stack  # noqa: E402
from redis import Redis  # noqa: E402

PEERS_PYTHON = HERE.parent / ".peers-venv" / "bin" / "python"
RESULTS = HERE.parent / "results"
WORKLOADS = ("enqueue", "drain", "latency")
ADAPTER_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Entry:
    name: str
    script: str
    redis_db: int
    database: str = ""  # its own PostgreSQL database, if it uses one

    @property
    def python(self) -> str:
        return sys.executable if self.name == "Taskline" else str(PEERS_PYTHON)


SYSTEMS = (
    Entry("Taskline", "peer_taskline.py", 0, "bench"),  # stack() made and migrated it
    Entry("Dramatiq", "peer_dramatiq.py", 1),
    Entry("SAQ", "peer_saq.py", 2),
    Entry("Celery", "peer_celery.py", 3),
    Entry("PgQueuer", "peer_pgqueuer.py", 4, "pgqueuer"),
)


def with_db(url: str, path: str) -> str:
    """`url` with its last path segment (database name or Redis db) replaced."""
    return url.rsplit("/", 1)[0] + "/" + path


def run_adapter(
    entry: Entry, workload: str, found: Stack, flags: list[str]
) -> list[dict[str, Any]]:
    env = {**os.environ, "BENCH_REDIS_URL": with_db(found.redis_url, str(entry.redis_db))}
    if entry.database:
        env["BENCH_DSN"] = with_db(found.dsn, entry.database)
    argv = [entry.python, str(HERE / entry.script), workload, *flags]
    began = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=ADAPTER_TIMEOUT_S, check=False)  # fmt: skip
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {entry.name} {workload}: FAILED ({reason})", flush=True)
        sys.stderr.write(done.stderr[-3000:])
        return [{"system": entry.name, "workload": workload, "failed": reason}]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for result in results:
        print(f"  {report.line(result)} [{time.monotonic() - began:.0f} s]", flush=True)
    return results


async def create_database(found: Stack, name: str) -> None:
    conn = await asyncpg.connect(found.dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


def prepare_pgqueuer(found: Stack) -> None:
    """PgQueuer's own database, with its schema (`pgq install`, from the peers' venv)."""
    asyncio.run(create_database(found, "pgqueuer"))
    subprocess.run(
        [str(PEERS_PYTHON), "-m", "pgqueuer", "--pg-dsn", with_db(found.dsn, "pgqueuer"),
         "install"],
        check=True, capture_output=True,
    )  # fmt: skip


async def pg_version(found: Stack) -> str:
    conn = await asyncpg.connect(found.dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def valkey_version(found: Stack) -> str:
    with Redis.from_url(found.redis_url) as redis:
        info = redis.info("server")
    return str(info.get("valkey_version") or info.get("redis_version"))


def ensure_wrk() -> str | None:
    """None when wrk is there (installed from Debian's packages if need be), else why not."""
    if shutil.which("wrk"):
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "wrk is not installed, and apt-get is missing or needs root"
    print("installing Debian's wrk (apt-get install wrk)", flush=True)
    for argv in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "wrk"]):  # fmt: skip
        subprocess.run(argv, capture_output=True, check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
        if shutil.which("wrk"):
            return None
    return "apt-get could not install wrk"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20_000, help="drain: jobs")
    parser.add_argument("--enqueue-tasks", type=int, default=2000, help="enqueue: jobs")
    parser.add_argument("--rate", type=float, default=200, help="latency: jobs/s")
    parser.add_argument("--seconds", type=float, default=10, help="latency: how long")
    parser.add_argument("--wrk-seconds", type=float, default=15)
    parser.add_argument("--systems", default=",".join(entry.name for entry in SYSTEMS))
    parser.add_argument("--workloads", default=",".join((*WORKLOADS, "wrk")))
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not PEERS_PYTHON.exists():
        raise SystemExit(f"no {PEERS_PYTHON}: run `make bench-peers`, which makes it")
    names, workloads = args.systems.split(","), args.workloads.split(",")
    entries = [entry for entry in SYSTEMS if entry.name in names]
    unknown = set(names) - {entry.name for entry in entries}
    if unknown:
        known = ", ".join(entry.name for entry in SYSTEMS)
        raise SystemExit(f"--systems: unknown {', '.join(sorted(unknown))} (known: {known})")
    flags = [f"--tasks={args.tasks}", f"--enqueue-tasks={args.enqueue_tasks}",
             f"--rate={args.rate:g}", f"--seconds={args.seconds:g}",
             f"--wrk-seconds={args.wrk_seconds:g}"]  # fmt: skip
    wrk_skipped = ensure_wrk() if "wrk" in workloads else "not asked for"
    results: list[dict[str, Any]] = []
    meta = report.machine(args, os.getloadavg())
    with stack() as found:
        if any(entry.name == "PgQueuer" for entry in entries):
            prepare_pgqueuer(found)
        meta |= {"postgres": asyncio.run(pg_version(found)), "valkey": valkey_version(found)}
        for index in range(args.rounds):
            print(f"round {index + 1} of {args.rounds}", flush=True)
            turned = entries[index % len(entries) :] + entries[: index % len(entries)]
            for workload in (w for w in WORKLOADS if w in workloads):
                for entry in turned:
                    results += run_adapter(entry, workload, found, flags)
            if wrk_skipped is None and any(entry.name == "Taskline" for entry in entries):
                results += run_adapter(SYSTEMS[0], "wrk", found, flags)
    meta |= {"load_after": os.getloadavg(), "wrk_skipped": wrk_skipped}
    if wrk_skipped:
        print(f"wrk: skipped ({wrk_skipped})")
    report.write(results, meta, args.out, PEERS_PYTHON)


if __name__ == "__main__":
    main()
