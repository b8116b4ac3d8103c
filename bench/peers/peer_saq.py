"""SAQ on Redis: the adapter, and the settings its worker runs
(`saq peer_saq.settings`: one process, concurrency 10)."""

from __future__ import annotations

import os
import sys
from typing import Any

import probe
from harness import System, main
from saq import Queue

queue = Queue.from_url(os.environ["BENCH_REDIS_URL"], name="bench")


async def noop(ctx: Any, *, mark: str) -> None:
    probe.record(mark)


settings = {"queue": queue, "functions": [noop], "concurrency": 10}


class SaqSystem(System):
    name = "SAQ"
    package = "saq"

    async def open(self) -> None:
        await queue.connect()

    async def close(self) -> None:
        await queue.disconnect()

    async def reset(self) -> None:
        await queue.redis.flushdb()

    async def enqueue(self, key: str) -> None:
        # Not key=: enqueue() takes the Job's own fields (key among them) as keywords.
        await queue.enqueue("noop", mark=key)

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "saq", "peer_saq.settings", "--workers", "1"], {}


if __name__ == "__main__":
    main(SaqSystem)
