"""Fixtures: the API as a real `taskline api` process on a free port, against
this test's own database and Redis namespace (the stores come from the task
feature's fixtures), and a way to run the `taskline` command against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tasks.tests.fixtures import TEST_HANDLERS, free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("taskline")  # the console script pyproject declares


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the API process was not ready within 30s"
        time.sleep(0.05)


@pytest.fixture
def api(settings: Settings, database_url: str, tmp_path: Path) -> Iterator[str]:
    """`taskline api` as a real process, once ready: its URL. Stopped after the test."""
    port = free_port()
    env = {
        **os.environ,
        "API_PORT": str(port),
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.cache_url,
        "REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "REDIS_QUEUE_NAME": settings.redis_queue_name,
        "TASKLINE_HANDLERS": TEST_HANDLERS,
        "LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SCRIPT), "api"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, log)
        yield url
    finally:
        for signum in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL only if SIGTERM was not enough
            if process.poll() is None:
                process.send_signal(signum)
                with suppress(subprocess.TimeoutExpired):
                    process.wait(20)


@pytest.fixture
def worker(spawn_worker) -> None:
    """A real worker process beside the API; stopped after the test."""
    spawn_worker()
