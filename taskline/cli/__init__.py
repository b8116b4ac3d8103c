"""The `taskline` command: run Taskline (dev, api, worker, migrate)."""

from taskline.cli.main import main

__all__ = ["main"]
