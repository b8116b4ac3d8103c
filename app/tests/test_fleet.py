"""`taskline worker --processes N` / WORKER_PROCESSES: real supervisors, real
children, real signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import asyncpg
import httpx
import psutil

from app.fleet import RESTART_CAP_S, restart_delay_s
from app.lifespan import Resources
from tasks import presence
from tasks.tests.fixtures import ROOT, WorkerProcess, wait_for, wait_status
from tasks.tests.test_worker import executions, post

Spawn = Callable[..., WorkerProcess]
CLI = ("-m", "taskline", "worker")


def children(supervisor: WorkerProcess) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(supervisor.process.pid).children()}
    except psutil.NoSuchProcess:
        return set()


async def live_pids(resources: Resources) -> set[int]:
    return {report.pid for report in await presence.live_workers(resources)}


async def wait_children(supervisor: WorkerProcess, resources: Resources, count: int) -> set[int]:
    """Until `count` children run and each has said it is alive: their pids."""

    async def ready() -> bool:
        assert supervisor.process.poll() is None, supervisor.log()
        pids = children(supervisor)
        return len(pids) == count and pids <= await live_pids(resources)

    await wait_for(ready, timeout_s=60, what=f"{count} worker processes to report")
    return children(supervisor)


async def wait_exit(supervisor: WorkerProcess, timeout_s: float) -> int:
    return await asyncio.to_thread(supervisor.wait, timeout_s)


def test_restart_delays_double_up_to_the_cap() -> None:
    delays = [restart_delay_s(deaths) for deaths in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] == RESTART_CAP_S and delays == sorted(delays)


def test_a_process_count_out_of_range_is_refused_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, *CLI, "--processes", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--processes: must be a whole number 1..256" in done.stderr, done.stderr


async def test_three_processes_are_three_workers_sharing_the_work(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    spawn_worker: Spawn,
) -> None:
    supervisor = spawn_worker(WORKER_PROCESSES="3", WORKER_QUEUE_MAXSIZE="2")
    pids = await wait_children(supervisor, resources, 3)
    reports = await presence.live_workers(resources)
    assert len({report.id for report in reports}) == 3
    assert supervisor.process.pid not in {report.pid for report in reports}

    ids = [await post(client, f"shared {n}", "record", seconds=0.3) for n in range(18)]
    await wait_status(db, ids, "completed", timeout_s=60)
    assert {row["pid"] for row in await executions(db)} == pids, "each child took a share"

    supervisor.signal(signal.SIGTERM)
    assert await wait_exit(supervisor, 60) == 0, supervisor.log()


async def test_a_killed_child_is_replaced_and_the_work_goes_on(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    spawn_worker: Spawn,
) -> None:
    supervisor = spawn_worker(WORKER_PROCESSES="2", WORKER_QUEUE_MAXSIZE="2")
    before = await wait_children(supervisor, resources, 2)
    victim = min(before)
    psutil.Process(victim).kill()

    async def replaced() -> bool:
        pids = children(supervisor)
        return len(pids) == 2 and victim not in pids and len(pids - before) == 1

    await wait_for(replaced, timeout_s=30, what="the killed worker process to be replaced")
    after = await wait_children(supervisor, resources, 2)
    assert "was killed by SIGKILL" in supervisor.log() and "starting it again" in supervisor.log()

    ids = [await post(client, f"after {n}", "record", seconds=0.3) for n in range(12)]
    await wait_status(db, ids, "completed", timeout_s=60)
    assert {row["pid"] for row in await executions(db)} == after

    supervisor.signal(signal.SIGTERM)
    assert await wait_exit(supervisor, 60) == 0, supervisor.log()


async def test_sigterm_lets_every_running_task_finish_then_exits_0(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    spawn_worker: Spawn,
) -> None:
    supervisor = spawn_worker(*CLI, "--processes", "3", WORKER_QUEUE_MAXSIZE="4")
    pids = await wait_children(supervisor, resources, 3)
    ids = [await post(client, f"drain {n}", "record", seconds=2) for n in range(12)]

    async def all_running() -> bool:
        return len(await executions(db)) == len(ids)

    await wait_for(all_running, timeout_s=30, what="12 tasks running in 3 x 4 slots")
    stopped_at_s = time.monotonic()
    supervisor.signal(signal.SIGTERM)
    assert await wait_exit(supervisor, 30) == 0, supervisor.log()

    rows = await executions(db)
    assert len(rows) == 12 and all(row["finished_at"] is not None for row in rows)
    assert {row["pid"] for row in rows} == pids
    await wait_status(db, ids, "completed", timeout_s=1)  # zero loss, nothing given back
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert time.monotonic() - stopped_at_s < 30


async def test_a_second_signal_stops_the_children_at_once_and_exits_1(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    resources: Resources,
    spawn_worker: Spawn,
) -> None:
    supervisor = spawn_worker(WORKER_PROCESSES="2", WORKER_QUEUE_MAXSIZE="1")
    await wait_children(supervisor, resources, 2)
    ids = [await post(client, f"long {n}", "record", seconds=30) for n in range(2)]

    async def both_running() -> bool:
        return len(await executions(db)) == len(ids)

    await wait_for(both_running, timeout_s=30, what="a long task in each child")
    supervisor.signal(signal.SIGTERM)

    async def both_draining() -> bool:
        return supervisor.log().count("waiting up to") == 2

    await wait_for(both_draining, timeout_s=30, what="both children to drain")
    supervisor.signal(signal.SIGTERM)
    assert await wait_exit(supervisor, 15) == 1, supervisor.log()
    assert supervisor.log().count("exited with code 1") == 2
