"""Celery with a Redis broker and no result backend: the adapter, and the task
its worker runs (`celery -A peer_celery worker --pool threads --concurrency 10`:
one process; the default prefork pool would be ten)."""

from __future__ import annotations

import os
import sys

import probe
from celery import Celery
from harness import System, main
from redis import Redis

app = Celery("peer_celery", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop(key: str) -> None:
    probe.record(key)


class CelerySystem(System):
    name = "Celery"
    package = "celery"

    async def open(self) -> None:
        self.redis = Redis.from_url(self.options.redis_url)

    async def close(self) -> None:
        self.redis.close()

    async def reset(self) -> None:
        self.redis.flushdb()

    async def enqueue(self, key: str) -> None:
        noop.delay(key)

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "celery", "-A", "peer_celery", "worker"]
        return [*argv, "--pool", "threads", "--concurrency", "10", "--loglevel", "WARNING"], {}


if __name__ == "__main__":
    main(CelerySystem)
