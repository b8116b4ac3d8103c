"""Fixtures of the gateway's tests: a real upstream process, the gateway app in
this process (or as `taskline gateway`), and helpers to read what the upstream saw."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from gateway.app import create_gateway_app
from tasks.tests.fixtures import ROOT, TEST_HANDLERS, free_port, wait_for

UPSTREAM = ROOT / "gateway" / "tests" / "upstream.py"


@dataclass
class Upstream:
    """The upstream process (gateway/tests/upstream.py) and what it recorded."""

    url: str
    process: subprocess.Popen[bytes]

    async def log(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url) as http:
            return dict((await http.get("/_upstream/log")).json())

    async def requests(self) -> list[dict[str, Any]]:
        return list((await self.log())["requests"])

    async def release(self, name: str) -> None:
        async with httpx.AsyncClient(base_url=self.url) as http:
            (await http.post("/_upstream/release", params={"name": name})).raise_for_status()

    async def wait_requests(self, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
        async def arrived() -> bool:
            return len(await self.requests()) >= count

        await wait_for(arrived, timeout_s=timeout_s, what=f"{count} request(s) at the upstream")
        return await self.requests()


def header(record: dict[str, Any], name: str) -> list[str]:
    """Every value of a header in an upstream record, in order."""
    return [value for key, value in record["headers"] if key.lower() == name.lower()]


def body_of(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["body_base64"])


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    port = free_port()
    with (tmp_path / "upstream.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(UPSTREAM), str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    started = Upstream(f"http://127.0.0.1:{port}", process)

    async def ready() -> bool:
        assert process.poll() is None, (tmp_path / "upstream.log").read_text()
        try:
            await started.log()
        except httpx.TransportError:
            return False
        return True

    try:
        await wait_for(ready, timeout_s=15, what="the upstream to listen")
        yield started
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def settings(settings: Settings, upstream: Upstream) -> Settings:
    """The tests' settings, with the upstream as the gateway's target (the
    workers, the API and the gateway all read it)."""
    return settings.model_copy(update={"gateway_target_base_url": upstream.url})


@asynccontextmanager
async def gateway_client(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app in this process, its lifespan run; errors come back as answers."""
    app = create_gateway_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(settings) as http:
        yield http


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["detail"]
    return body


SpawnGateway = Callable[..., Awaitable[str]]


@pytest.fixture
def spawn_gateway(settings: Settings, database_url: str, tmp_path: Path) -> Iterator[SpawnGateway]:
    """`taskline gateway` as a real process on a free port; its URL once ready."""
    started: list[subprocess.Popen[bytes]] = []

    async def spawn(**env_overrides: str) -> str:
        port = free_port()
        env = {
            **os.environ,
            "GATEWAY_PORT": str(port),
            "GATEWAY_TARGET_BASE_URL": settings.gateway_target_base_url,
            "DATABASE_URL": database_url,
            "REDIS_URL": settings.cache_url,
            "REDIS_CLUSTER": str(settings.redis_cluster).lower(),
            "REDIS_QUEUE_NAME": settings.redis_queue_name,
            "TASKLINE_HANDLERS": TEST_HANDLERS,
            "LOG_LEVEL": "WARNING",
            **env_overrides,
        }
        log_path = tmp_path / f"gateway-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "taskline", "gateway"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url) as http:

            async def ready() -> bool:
                assert process.poll() is None, log_path.read_text()
                try:
                    return (await http.get("/_gateway/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, timeout_s=30, what="the gateway process to be ready")
        return url

    yield spawn
    for process in started:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signum)
                with suppress(subprocess.TimeoutExpired):
                    process.wait(20)


async def gather_all(*calls: Awaitable[httpx.Response]) -> list[httpx.Response]:
    return list(await asyncio.gather(*calls))
