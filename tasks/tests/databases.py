"""Each test's own database, made from the migrated template before the test
asks for it and dropped after it, on a thread of its own.

Copying the template costs PostgreSQL about a quarter of a second here, and
dropping a database a few tens of milliseconds: hundreds of tests would wait
minutes for them. The thread keeps AHEAD databases ready and drops what tests
hand back while the next tests run, over one connection of its own.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid

import asyncpg

AHEAD = 2
TAKE_TIMEOUT_S = 120.0


class DatabasePool:
    def __init__(self, admin_dsn: str, template: str) -> None:
        self._admin_dsn = admin_dsn
        self._template = template
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        # What the thread does next, in order: None makes a database, a name
        # drops that one, STOP ends the thread.
        self._orders: queue.Queue[str | object | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="test-databases", daemon=True)
        self._conn: asyncpg.Connection | None = None

    def start(self) -> None:
        for _ in range(AHEAD):
            self._orders.put(None)
        self._thread.start()

    def take(self) -> str:
        """A fresh database's name (blocking: call it in a thread); another is made."""
        found = self._ready.get(timeout=TAKE_TIMEOUT_S)
        if isinstance(found, BaseException):
            raise RuntimeError("could not make a test database") from found
        self._orders.put(None)
        return found

    def give_back(self, name: str) -> None:
        """Drop it (soon, on the thread), with whatever still connects to it."""
        self._orders.put(name)

    def stop(self) -> None:
        """Drop what was handed back or made ahead, then end the thread."""
        self._orders.put(_STOP)
        self._thread.join(timeout=60)

    def _serve(self) -> None:
        asyncio.run(self._follow_orders())

    async def _follow_orders(self) -> None:
        while (order := await asyncio.to_thread(self._orders.get)) is not _STOP:
            await self._carry_out(order)
        while not self._ready.empty():
            made = self._ready.get_nowait()
            if isinstance(made, str):
                await self._carry_out(made)
        if self._conn is not None:
            await self._conn.close()

    async def _carry_out(self, order: object) -> None:
        name = order if isinstance(order, str) else f"test_{uuid.uuid4().hex[:16]}"
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._admin_dsn)
            if isinstance(order, str):
                await self._conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            await self._conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        except Exception as error:
            if not isinstance(order, str):  # the test that takes it says so
                self._ready.put(error)
            return  # a database not dropped goes with the server's folder
        self._ready.put(name)


_STOP = object()
