"""Dramatiq with its Redis broker: the adapter, and the actor its worker runs
(`dramatiq peer_dramatiq --processes 1 --threads 10`)."""

from __future__ import annotations

import os
import sys

import dramatiq
import probe
from dramatiq.brokers.redis import RedisBroker
from harness import System, main

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop(key: str) -> None:
    probe.record(key)


class DramatiqSystem(System):
    name = "Dramatiq"
    package = "dramatiq"

    async def reset(self) -> None:
        broker.client.flushdb()

    async def enqueue(self, key: str) -> None:
        noop.send(key)

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "dramatiq", "peer_dramatiq", "--processes", "1"]
        return [*argv, "--threads", "10"], {}


if __name__ == "__main__":
    main(DramatiqSystem)
