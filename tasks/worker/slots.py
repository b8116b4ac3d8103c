"""Concurrency slots: work is taken only when a slot is free."""

from __future__ import annotations

import asyncio


class Slots:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._changed = asyncio.Event()

    @property
    def free(self) -> int:
        return self._free

    @property
    def busy(self) -> int:
        return self.capacity - self._free

    async def take_free(self) -> int:
        """Wait until at least one slot is free, then take every free slot."""
        if self._free == 0:
            while self._free == 0:
                self._changed.clear()
                await self._changed.wait()
            # Handlers started together finish together: let the others that
            # are done give back their slots too, so the next batch is whole.
            await asyncio.sleep(0)
        taken, self._free = self._free, 0
        return taken

    def give_back(self, count: int = 1) -> None:
        if count <= 0:
            return
        self._free += count
        if self._free > self.capacity:
            raise RuntimeError("more slots given back than taken")
        self._changed.set()

    async def wait_all_free(self) -> None:
        while self._free < self.capacity:
            self._changed.clear()
            await self._changed.wait()
