"""The API against its own OpenAPI document: schemathesis (every check, on the
examples, coverage and fuzzing phases) drives a real API process on real
PostgreSQL and Redis, and must find nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tasks.tests.fixtures import ROOT, free_port

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Per operation and phase: 20 x 50 operations keeps the fuzzing about where
# 30 x 37 had it; the coverage phase adds what each schema's bounds call for.
# The run costs about 55 s of CPU (37 s with 37 operations at 30 examples).
MAX_EXAMPLES = 20


@pytest.fixture
def api_url(settings: Settings, database_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.cache_url,
        "REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "REDIS_QUEUE_NAME": settings.redis_queue_name,
        "API_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    with (tmp_path / "api.log").open("wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "taskline", "api"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, api)
        yield url
    finally:
        api.terminate()
        api.wait(30)


def _wait_ready(url: str, api: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise AssertionError(f"the API exited with {api.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the API was not ready within {timeout_s}s")


@pytest.mark.timeout(420)
def test_the_api_keeps_its_openapi_contract(api_url: str, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    done = subprocess.run(
        [
            str(schemathesis), "--config-file", str(CONFIG), "--no-color",
            "run", api_url + "/openapi.json",
            "--checks", "all",
            # AUTH=none: every caller is an anonymous admin, so the API rightly
            # serves requests without a key (auth/tests cover AUTH=keys).
            "--exclude-checks", "ignored_auth",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", "1",
            "--workers", "1",  # hypothesis parses lambda sources in a thread-unsafe way
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=360, check=False,
    )  # fmt: skip
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-20_000:]
    assert "Tested: " in report and "No issues found" in report, report[-5_000:]


def test_no_operation_is_left_out_of_the_contract() -> None:
    """Allowances are per operation and narrow (see the comments in the config);
    switching an operation off is not one of them."""
    config = tomllib.loads(CONFIG.read_text())
    assert [op for op in config.get("operations", []) if op.get("enabled") is False] == []
    assert "exclude-checks" not in str(config)
