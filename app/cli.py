"""The `taskline` command: dev, api, worker, migrate."""

from __future__ import annotations

import argparse
import os
import sys

from app.config import load_settings
from app.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="taskline", description="Taskline task service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="embedded PostgreSQL + Valkey, migrations, API and a worker")
    api = commands.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--workers", type=int, default=1, help="API processes")
    commands.add_parser("worker", help="run one worker")
    commands.add_parser("migrate", help="apply database migrations (waits for the database)")
    args = parser.parse_args(argv)
    # As with `python -m`, the working directory is importable, so
    # TASKLINE_HANDLERS can name the project's own modules (handlers.media).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "dev":
        from app.supervisor import run_dev

        sys.exit(run_dev(settings))
    elif args.command == "api":
        import uvicorn

        uvicorn.run(
            "main:app",
            host=settings.api_host,
            port=settings.api_port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            access_log=settings.access_log,
            log_config=None,  # uvicorn's lines go through configure_logging's handler
        )
    elif args.command == "worker":
        from tasks.worker.main import main as worker_main

        worker_main()
    elif args.command == "migrate":
        from app.migrate import upgrade

        upgrade(settings.db_url)


if __name__ == "__main__":
    main()
