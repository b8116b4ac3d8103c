"""The commands that run Taskline itself: dev, api, worker, gateway, migrate.

They read the server's settings (a bad value stops them with one line naming
the variable); the commands that talk to the API never do.
"""

from __future__ import annotations

import argparse
import os
import sys

from app.config import MAX_WORKER_PROCESSES, Settings, load_settings
from app.logs import configure_logging


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = commands.add_parser(
        "dev",
        help="embedded PostgreSQL + Valkey, migrations, API and a worker",
        description="What `make run` starts: embedded stores when DATABASE_URL and REDIS_URL"
        " are unset, migrations, the API and one worker. Ctrl-C stops everything.",
    )
    dev.set_defaults(run=run_dev)
    api = commands.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--workers", type=int, default=1, help="API processes")
    api.set_defaults(run=run_api)
    worker = commands.add_parser(
        "worker",
        help="run a worker (or N worker processes)",
        description="One worker in this process; with --processes N (or WORKER_PROCESSES)"
        " above 1, a supervisor of N worker processes that restarts one that dies and"
        " passes SIGTERM/SIGINT on to all of them (each drains its running tasks).",
    )
    worker.add_argument(
        "--processes",
        type=_process_count,
        metavar="N",
        help=f"worker processes, 1..{MAX_WORKER_PROCESSES} (default: WORKER_PROCESSES, 1)",
    )
    worker.set_defaults(run=run_worker)
    gateway = commands.add_parser(
        "gateway",
        help="serve the gateway in front of GATEWAY_TARGET_BASE_URL (uvicorn)",
        description="Every request becomes an `http` task, run by the workers against"
        " GATEWAY_TARGET_BASE_URL; the caller gets the target's answer. Listens on"
        " GATEWAY_HOST:GATEWAY_PORT (default 127.0.0.1:8001).",
    )
    gateway.set_defaults(run=run_gateway)
    migrate = commands.add_parser(
        "migrate", help="apply database migrations (waits for the database)"
    )
    migrate.set_defaults(run=run_migrate)


def _process_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKER_PROCESSES:
        raise argparse.ArgumentTypeError(f"must be a whole number 1..{MAX_WORKER_PROCESSES}")
    return int(text)


def _settings() -> Settings:
    # As with `python -m`, the working directory is importable, so
    # TASKLINE_HANDLERS can name the project's own modules (handlers.media).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _serving_settings() -> Settings:
    """The settings of a command that serves the API: AUTH=none is refused beyond
    loopback unless ALLOW_UNAUTHENTICATED says so (README "Access control")."""
    settings = _settings()
    problem = settings.unauthenticated_exposure()
    if problem is not None:
        print(f"taskline: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return settings


def run_dev(args: argparse.Namespace) -> int:
    from app.supervisor import run_dev as supervise

    settings = _serving_settings()
    me = [sys.executable, "-m", "taskline"]
    commands = {"api": [*me, "api"], "worker": [*me, "worker"]}
    if settings.gateway_target_base_url:  # a target is set: serve the gateway too
        commands["gateway"] = [*me, "gateway"]
    return supervise(settings, commands)


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _serving_settings()
    uvicorn.run(
        "main:app",
        host=settings.api_host,
        port=settings.api_port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
        log_config=None,  # uvicorn's lines go through configure_logging's handler
    )
    return 0


def run_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_gateway_app

    settings = _settings()
    if not settings.gateway_target_base_url:
        print("taskline: invalid setting GATEWAY_TARGET_BASE_URL: must be set", file=sys.stderr)
        return 2
    uvicorn.run(
        create_gateway_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        # The target's Server and Date headers pass through; no second pair of ours.
        server_header=False,
        date_header=False,
    )
    return 0


def run_worker(args: argparse.Namespace) -> int:
    # worker.py builds the worker with what the features above tasks add.
    from worker import main as worker_main

    _settings()
    worker_main(args.processes, [sys.executable, "-m", "taskline", "worker"])
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from app.migrate import upgrade

    settings = _settings()
    upgrade(settings.db_url, pooler=settings.database_pooler)
    return 0
