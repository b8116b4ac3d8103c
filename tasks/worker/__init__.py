"""The worker: pulls ids, claims tasks, runs handlers, records outcomes."""

from tasks.worker.worker import Worker

__all__ = ["Worker"]
