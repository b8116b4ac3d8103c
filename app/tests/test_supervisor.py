"""`taskline dev` (what `make run` starts): embedded stores, API and worker,
data that survives a restart, and Ctrl-C that leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        TASKLINE_DATA_DIR=str(tmp_path / "data"),
        API_PORT=str(free_port()),
        EMBEDDED_PG_PORT=str(free_port()),
        EMBEDDED_REDIS_PORT=str(free_port()),
        WORKER_SHUTDOWN_TIMEOUT="5",
    )
    return env


@pytest.fixture
def start_dev(dev_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], psutil.Process]]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> psutil.Process:
        log = (tmp_path / f"dev-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "taskline", "dev"], cwd=ROOT, env=dev_env, stdout=log, stderr=log
        )
        log.close()
        started.append(process)
        base = f"http://127.0.0.1:{dev_env['API_PORT']}"
        wait_until(lambda: answers(base + "/ready"), timeout_s=60, what="the dev stack")
        return psutil.Process(process.pid)

    yield start
    for process in started:
        if process.poll() is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            process.wait()


def stop_with_ctrl_c(supervisor: psutil.Process) -> list[psutil.Process]:
    family = supervisor.children(recursive=True)
    assert len(family) >= 4, [p.cmdline() for p in family]  # postgres, valkey, api, worker
    supervisor.send_signal(signal.SIGINT)
    assert supervisor.wait(30) == 0
    return family


def test_dev_stack_runs_a_task_and_stops_cleanly(start_dev, dev_env):
    base = f"http://127.0.0.1:{dev_env['API_PORT']}"
    supervisor = start_dev()
    created = httpx.post(base + "/tasks", json={"message": "Hello World"}, timeout=5)
    assert created.status_code == 201
    task_url = base + created.headers["location"]

    def completed() -> bool:
        return httpx.get(task_url, timeout=5).json()["status"] == "completed"

    wait_until(completed, timeout_s=30, what="the task to complete")
    assert httpx.get(task_url, timeout=5).json()["result"] == {"message": "Hello World"}

    family = stop_with_ctrl_c(supervisor)
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], f"left running: {[p.pid for p in alive]}"
    assert not answers(base + "/health")

    # Data lives in TASKLINE_DATA_DIR and survives a restart.
    supervisor = start_dev()
    again = httpx.get(task_url, timeout=5)
    assert again.status_code == 200
    assert again.json()["status"] == "completed"
    stop_with_ctrl_c(supervisor)


def test_dev_stack_listens_on_loopback_only(start_dev, dev_env):
    supervisor = start_dev()
    ports = {int(dev_env[name]) for name in ("API_PORT", "EMBEDDED_PG_PORT", "EMBEDDED_REDIS_PORT")}
    listening = [
        conn
        for proc in [supervisor, *supervisor.children(recursive=True)]
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert {conn.laddr.port for conn in listening} >= ports
    assert {conn.laddr.ip for conn in listening} <= {"127.0.0.1"}
    stop_with_ctrl_c(supervisor)


def start_again(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskline", "dev"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_instance_refuses_in_one_line_before_starting_anything(
    start_dev, dev_env, tmp_path
):
    supervisor = start_dev()
    # Its own children only: PostgreSQL forks and ends backends and autovacuum
    # workers of its own at any time.
    family = {process.pid for process in supervisor.children()}

    second = start_again(dev_env)
    assert second.returncode == 1, second.stderr
    assert second.stdout == ""
    [line] = second.stderr.strip().splitlines()
    assert "another Taskline instance is running" in line and str(supervisor.pid) in line, line

    # Its own data folder, but the same ports: the ports tell.
    third = start_again({**dev_env, "TASKLINE_DATA_DIR": str(tmp_path / "other")})
    assert third.returncode == 1, third.stderr
    [line] = third.stderr.strip().splitlines()
    assert "another Taskline instance is running" in line and dev_env["API_PORT"] in line, line
    assert not (tmp_path / "other" / "postgres").exists()

    # The first one carries on, untouched.
    assert {process.pid for process in supervisor.children()} == family
    assert answers(f"http://127.0.0.1:{dev_env['API_PORT']}/ready")
    stop_with_ctrl_c(supervisor)
    if os.geteuid() == 0:  # what root gets done on its behalf is said at start
        log = (tmp_path / "dev-0.log").read_text()
        assert "running as root: PostgreSQL runs as the system user taskline_pg" in log, log
