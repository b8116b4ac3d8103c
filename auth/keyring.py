"""The keys an API process knows: lookups through the cache, the listener that
drops revoked keys from it, and the batched `last_used_at` writes.

One KeyRing per API process, started and stopped by the lifespan. Its side
loops are supervised: a loop that fails is logged and started again, and while
the listener is not hearing Redis the cache keeps entries one second at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress

from app.lifespan import Resources
from app.redis import open_pubsub
from auth import repository
from auth.cache import KeyCache, KeyRecord

log = logging.getLogger("taskline.auth")

PING_INTERVAL_S = 0.25
FLUSH_INTERVAL_S = 30.0
MAX_NOTED = 10_000


class KeyRing:
    def __init__(self, resources: Resources, *, cache: KeyCache | None = None) -> None:
        self._resources = resources
        self.cache = cache or KeyCache()
        self._loading: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._used: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        # Checked by the loops too: redis-py can swallow a cancellation that lands
        # while a read times out, so cancel() alone may not stop a loop.
        self._closing = False

    async def lookup(self, key_id: str) -> KeyRecord | None:
        """The key's row as of at most a cache TTL ago; concurrent misses share one read."""
        found, record = self.cache.get(key_id)
        if found:
            return record
        pending = self._loading.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._loading[key_id] = future
        epoch = self.cache.epoch
        try:
            record = await self._read(key_id)
        except BaseException as error:
            if isinstance(error, Exception):
                future.set_exception(error)
                future.exception()  # retrieved: a lone request must not log "never retrieved"
            else:
                future.cancel()
            raise
        finally:
            del self._loading[key_id]
        self.cache.put(key_id, record, epoch=epoch)
        future.set_result(record)
        return record

    async def _read(self, key_id: str) -> KeyRecord | None:
        async with self._resources.sessionmaker() as session:
            row = await repository.get_key(session=session, key_id=key_id)
        if row is None:
            return None
        return KeyRecord(
            id=row.id,
            owner=row.owner,
            scopes=frozenset(row.scopes),
            secret_hash=row.secret_hash,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )

    def note_use(self, key_id: str) -> None:
        if len(self._used) < MAX_NOTED:
            self._used.add(key_id)

    def start(self) -> None:
        self._closing = False
        self._loops = [
            asyncio.create_task(
                self._supervise("key listener", self._listen), name="auth-listener"
            ),
            asyncio.create_task(
                self._supervise("key use writer", self._flush_loop), name="auth-flush"
            ),
        ]

    async def close(self) -> None:
        self._closing = True
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self.cache.lost()
        with suppress(Exception):
            await self.flush_used()

    async def _listen(self) -> None:
        """Drop keys named on the channel; ping so a silent Redis is noticed within a second."""
        redis, channel = self._resources.redis, self._resources.keys.keys_channel
        try:
            async with await open_pubsub(redis) as pubsub:
                await pubsub.subscribe(channel)
                self.cache.clear()  # revokes published while we were not listening
                next_ping = 0.0
                while not self._closing:
                    if time.monotonic() >= next_ping:
                        await pubsub.ping()
                        next_ping = time.monotonic() + PING_INTERVAL_S
                    message = await pubsub.get_message(timeout=PING_INTERVAL_S)
                    if message is None:
                        continue
                    self.cache.heard()
                    if message["type"] == "message":
                        self.cache.invalidate(str(message["data"]))
        finally:
            self.cache.lost()

    async def _flush_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush_used()

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop` again after it fails, backing off from 0.1 s to 5 s, until closed."""
        delay_s = 0.1
        while not self._closing:
            started = time.monotonic()
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("%s failed (%s: %s); again in %.1fs", name, type(error).__name__,
                            error, delay_s)  # fmt: skip
            if time.monotonic() - started > 10:
                delay_s = 0.1
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)

    async def flush_used(self) -> None:
        if not self._used:
            return
        used, self._used = sorted(self._used), set()
        async with self._resources.sessionmaker() as session:
            await repository.touch_keys(session=session, key_ids=used)
