"""`taskline dev`: the embedded stack, the API and one worker, stopped together.

Every child runs in its own session, so Ctrl-C reaches this process only and
the shutdown goes in order: API and worker first (one SIGTERM each, so the
worker drains), then Valkey, then PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from types import FrameType

from app.config import Settings
from app.embedded import EmbeddedPostgres, EmbeddedValkey, die_with_parent
from app.instance import AlreadyRunning, single_instance
from app.migrate import upgrade

log = logging.getLogger("taskline.dev")


@contextmanager
def embedded_stores(settings: Settings) -> Iterator[dict[str, str]]:
    """Start what is not configured; yield the environment that points at it."""
    env: dict[str, str] = {}
    data_dir = settings.data_dir.resolve()
    with ExitStack() as stack:
        if settings.database_url is None:
            postgres = EmbeddedPostgres(data_dir / "postgres", settings.embedded_pg_port)
            log.info("starting embedded PostgreSQL on 127.0.0.1:%d (data in %s)",
                     postgres.port, postgres.data_dir)  # fmt: skip
            postgres.start()
            stack.callback(postgres.stop)
            env["DATABASE_URL"] = postgres.url()
        if settings.redis_url is None:
            valkey = EmbeddedValkey(data_dir / "valkey", settings.embedded_redis_port)
            log.info("starting embedded Valkey on 127.0.0.1:%d", valkey.port)
            valkey.start()
            stack.callback(valkey.stop)
            env["REDIS_URL"] = valkey.url()
        yield env
        log.info("stopping embedded stores")


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )


def run_dev(settings: Settings, commands: Mapping[str, list[str]]) -> int:
    """Refuse at once, in one line, when another instance holds the data folder
    or the ports; otherwise start the stores, migrate, then run `commands` (name
    -> argv: the API and the worker, as the `taskline` command starts them) until
    Ctrl-C or one of them exits."""
    with ExitStack() as instance:
        try:
            instance.enter_context(single_instance(settings))
        except AlreadyRunning as error:
            print(f"taskline: {error}", file=sys.stderr)
            return 1
        return _run(settings, commands)


def _run(settings: Settings, commands: Mapping[str, list[str]]) -> int:
    stop = threading.Event()
    children: dict[str, subprocess.Popen[bytes]] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: the worker's second signal exits at once
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with embedded_stores(settings) as env:
            upgrade(env.get("DATABASE_URL", settings.db_url), pooler=settings.database_pooler)
            for name, argv in commands.items():
                children[name] = _spawn(argv, env)
            log.info("Taskline is up: http://%s:%d (docs at /docs). Ctrl-C stops everything.",
                     settings.api_host, settings.api_port)  # fmt: skip
            code = _watch(children, stop)
            _stop_children(children, grace_s=settings.worker_shutdown_timeout_s + 5)
            return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(children: dict[str, subprocess.Popen[bytes]], stop: threading.Event) -> int:
    while not stop.wait(0.5):
        for name, child in children.items():
            if child.poll() is not None:
                log.error("%s exited with code %s; stopping everything", name, child.returncode)
                return 1
    return 0


def _stop_children(children: dict[str, subprocess.Popen[bytes]], *, grace_s: float) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for name, child in children.items():
        try:
            child.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", name, grace_s)
            child.kill()
            child.wait()
