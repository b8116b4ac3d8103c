"""The `taskline` command: dev, api, worker, migrate, and the commands features
register (keys)."""

from __future__ import annotations

import argparse
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
    from auth.cli import register as register_keys  # a feature's commands, imported late

    register_keys(commands)
    args = parser.parse_args(argv)
    if hasattr(args, "run"):  # a registered command: a function of the arguments
        sys.exit(args.run(args))

    settings = load_settings()
    configure_logging(settings.log_level)
    if args.command in ("dev", "api") and settings.unauthenticated_exposure():
        print(f"taskline: {settings.unauthenticated_exposure()}", file=sys.stderr)
        sys.exit(2)
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
            access_log=False,
        )
    elif args.command == "worker":
        from tasks.worker.main import main as worker_main

        worker_main()
    elif args.command == "migrate":
        from app.migrate import upgrade

        upgrade(settings.db_url)


if __name__ == "__main__":
    main()
