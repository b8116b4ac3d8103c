"""Shared setup for the benchmarks: servers, a fresh database, a worker process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rates import percentile  # noqa: E402

from app.embedded import EmbeddedPostgres, EmbeddedValkey  # noqa: E402
from app.migrate import upgrade  # noqa: E402

__all__ = [
    "ROOT",
    "Stack",
    "free_port",
    "percentile",
    "server_processes",
    "stack",
    "start_api",
    "start_worker",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    database_url: str  # SQLAlchemy form
    redis_url: str
    namespace: str

    @property
    def dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://")

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_QUEUE_NAME": self.namespace,
            "LOG_LEVEL": "WARNING",
            **extra,
        }


@contextmanager
def stack() -> Iterator[Stack]:
    """BENCH_DATABASE_URL / BENCH_REDIS_URL, or embedded servers in a temp folder."""
    database_url = os.environ.get("BENCH_DATABASE_URL")
    redis_url = os.environ.get("BENCH_REDIS_URL")
    servers: list[EmbeddedPostgres | EmbeddedValkey] = []
    with tempfile.TemporaryDirectory(prefix="taskline-bench-") as tmp:
        try:
            if database_url is None:
                postgres = EmbeddedPostgres(Path(tmp) / "postgres", free_port(), database="bench")
                postgres.start()
                servers.append(postgres)
                database_url = postgres.url()
            if redis_url is None:
                valkey = EmbeddedValkey(Path(tmp) / "valkey", free_port())
                valkey.start()
                servers.append(valkey)
                redis_url = valkey.url()
            upgrade(database_url)
            found = Stack(database_url, redis_url, f"bench:{uuid.uuid4().hex[:8]}")
            asyncio.run(_truncate(found.dsn))
            yield found
        finally:
            for server in reversed(servers):
                server.stop()


async def _truncate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE tasks")
    finally:
        await conn.close()


def start_worker(found: Stack, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=found.env(**env)
    )


def start_api(found: Stack, port: int, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskline", "api"],
        cwd=ROOT,
        env=found.env(API_PORT=str(port), **env),
    )


def server_processes(found: Stack) -> list[list[psutil.Process]]:
    """[PostgreSQL's processes, Valkey's]: each server found by the port it
    listens on (the postmaster with its backends); an empty list if not local."""
    ports = [urlsplit(found.database_url).port, urlsplit(found.redis_url).port]
    groups: list[list[psutil.Process]] = [[], []]
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        words = " ".join(cmdline).split()  # Valkey shows "valkey-server 127.0.0.1:PORT"
        for index, port in enumerate(ports):
            if port is not None and (
                ("-p" in words and str(port) in words) or words[-1:] == [f"127.0.0.1:{port}"]
            ):
                groups[index] = [process, *process.children(recursive=True)]
    return groups
