"""The `taskline` command: run Taskline (dev, api, worker, migrate) and work with
its API (submit, get, ls, cancel, retry, queues, top)."""

from taskline.cli.main import main

__all__ = ["main"]
