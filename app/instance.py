"""One `taskline dev` per data folder and per set of ports, checked before
anything starts: a second `make run` says so in one line and touches nothing."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.config import Settings

LOCK_NAME = "dev.lock"


class AlreadyRunning(RuntimeError):
    """Another instance holds the data folder, or a port it needs is taken."""


@contextmanager
def single_instance(settings: Settings) -> Iterator[None]:
    """Hold the data folder's lock for as long as this instance runs (the
    kernel drops it when the process dies, so no lock is ever left stale)."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / LOCK_NAME
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another Taskline instance is running{_pid_in(lock_path)} with its data in"
                f" {data_dir}; stop it first, or give this one its own TASKLINE_DATA_DIR"
                " and ports"
            ) from None
        check_ports(settings)
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def _pid_in(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def check_ports(settings: Settings) -> None:
    """Every port this instance would listen on must be free."""
    wanted = [("API_PORT", settings.api_host, settings.api_port)]
    if settings.database_url is None:
        wanted.append(("EMBEDDED_PG_PORT", "127.0.0.1", settings.embedded_pg_port))
    if settings.redis_url is None:
        wanted.append(("EMBEDDED_REDIS_PORT", "127.0.0.1", settings.embedded_redis_port))
    for variable, host, port in wanted:
        if port_in_use(host, port):
            raise AlreadyRunning(
                f"port {port} ({variable}) is in use: another Taskline instance is running,"
                f" or another program holds it; stop it, or set {variable}"
            )


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens there; bound as servers bind (SO_REUSEADDR), so
    a port whose last connections are still closing counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False
