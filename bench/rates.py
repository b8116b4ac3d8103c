"""Timing helpers with no dependency beyond the standard library, so that the
peers' adapters (bench/peers/, in their own virtualenv) time things exactly as
Taskline's own benchmarks do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def send_steadily(
    send: Callable[[int], Awaitable[K]], rate: float, seconds: float
) -> dict[K, float]:
    """Call `send(index)` `rate` times a second for `seconds`, each at its planned
    moment whether or not the ones before have answered; returns, per key that
    `send` gave back, the wall-clock time (time.time()) it was called at."""
    sent: dict[K, float] = {}

    async def one(index: int) -> None:
        started = time.time()
        sent[await send(index)] = started

    pending = set()
    begin = time.monotonic()
    for index in range(int(rate * seconds)):
        delay = begin + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.add(asyncio.create_task(one(index)))
    await asyncio.gather(*pending)
    return sent
