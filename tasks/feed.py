"""The event feed: ONE reader of the task event stream per API process.

It follows the stream with a blocking XREAD on a connection of its own (no
polling, of Redis or of PostgreSQL) and hands each batch of events to the
waiters (tasks/waiters.py: woken by final events) and to the subscribers of
GET /events (tasks/sse.py). When it loses Redis it ends every subscriber
cleanly (they resume with Last-Event-ID), and once it is back it wakes every
waiter to read its row again, since events may have been missed meanwhile.

It reads only while someone listens: a waiter, or an open GET /events. An API
process following the stream for nobody would pay for every event of the
whole fleet (a tenth of its CPU per POST sent one at a time). Once nobody
listens it stops after its current read; the first listener wakes it, and it
starts again at the stream's end and wakes every waiter, exactly as after a
reconnect. A stream is answered only once the feed follows.

Supervised: a reader that dies of anything but a lost store is logged and
started again, so a bug costs the waiters one re-read, not the process.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Protocol

from app.errors import is_store_error
from app.lifespan import Resources
from app.loops import cancel_and_wait, stop_if_canceled
from app.redis import RedisClient, create_reader_redis
from tasks import events
from tasks.waiters import Waiters
from tasks.worker.backoff import Backoff

log = logging.getLogger("taskline.api")

BLOCK_MS = 5_000
CLOSE_TIMEOUT_S = 2.0
FOLLOW_TIMEOUT_S = 5.0  # how long a new stream waits for an idle feed to follow
READ_COUNT = 500


class Subscriber(Protocol):
    def offer(self, batch: Sequence[events.Event]) -> None: ...

    def end(self, reason: str) -> None: ...


class EventFeed:
    def __init__(self, resources: Resources, waiters: Waiters) -> None:
        self.resources = resources
        self.waiters = waiters
        self.subscribers: set[Subscriber] = set()
        # Open GET /events streams, subscribed or still replaying: the feed follows
        # while one is open (weak: a stream never started goes with its request)
        self.streams: weakref.WeakSet[Subscriber] = weakref.WeakSet()
        self.connected = False
        self.failing = False  # its last read failed: Redis is down
        self.closing = False  # the API is shutting down: no new subscribers
        self.last_id: str | None = None  # the newest entry read
        self._tried = asyncio.Event()  # it connected, or found Redis down
        self._listener_came = asyncio.Event()
        self._redis: RedisClient | None = None
        self._runner: asyncio.Task[None] | None = None
        waiters.on_wait = self.wake

    def start(self) -> None:
        self._runner = asyncio.create_task(self._supervise(), name="event-feed")

    def wake(self) -> None:
        """Someone listens now: follow the stream, if the feed is idle."""
        self._listener_came.set()

    async def follow(self, stream: Subscriber, timeout_s: float = FOLLOW_TIMEOUT_S) -> bool:
        """Keep following the stream while `stream` is open; False if the feed is
        not following it within `timeout_s`, or at once if Redis is down."""
        self.streams.add(stream)
        self.wake()
        if not self.connected and not self.failing:
            with suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._tried.wait()
        return self.connected

    def shutting_down(self) -> None:
        self.closing = True
        self._end_subscribers("the API is shutting down")

    async def close(self) -> None:
        if self._runner is not None:
            stuck = await cancel_and_wait([self._runner], timeout_s=CLOSE_TIMEOUT_S)
            if stuck:
                log.warning("event feed did not stop within %.0fs of being canceled",
                            CLOSE_TIMEOUT_S)  # fmt: skip
        self._end_subscribers("the API is shutting down")
        if self._redis is not None:
            await self._redis.aclose()

    async def _supervise(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                stop_if_canceled()
                log.exception("event feed died; starting it again")
                self._lost("the event feed stopped")
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        backoff = Backoff(base_s=0.05, cap_s=2.0)
        while True:
            stop_if_canceled()  # a cancel redis-py swallowed during the last call
            if not self._listened():
                await self._idle()
            try:
                if not self.connected:
                    await self._connect()
                    stop_if_canceled()  # before the blocking read, not after it
                reply: Any = await self._client().xread(
                    {self.resources.keys.events: self.last_id or "$"},
                    count=READ_COUNT,
                    block=BLOCK_MS,
                )
            except Exception as error:
                stop_if_canceled()
                if not is_store_error(error):
                    raise
                self._lost(f"redis is unavailable ({type(error).__name__})")
                self.failing = True
                self._tried.set()
                await asyncio.sleep(backoff.next_delay_s())
                continue
            backoff.reset()
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    self._dispatch(entry_id, fields)

    async def _connect(self) -> None:
        """Find where the stream ends (first time), then wake every waiter: what
        happened while we were away may have gone unannounced."""
        newest: Any = await self._client().xrevrange(self.resources.keys.events, count=1)
        if self.last_id is None:
            self.last_id = newest[0][0] if newest else "0-0"
        if not self.connected:
            self.connected, self.failing = True, False
            log.debug("event feed following %s", self.resources.keys.events)
        self._tried.set()
        self.waiters.wake_all()

    def _listened(self) -> bool:
        return bool(self.streams) or bool(self.subscribers) or self.waiters.waiting > 0

    async def _idle(self) -> None:
        """Read nothing until someone listens, then start at the stream's end:
        what came meanwhile was for nobody."""
        self.connected = self.failing = False
        self.last_id = None
        self._tried.clear()
        while not self._listened():
            self._listener_came.clear()
            await self._listener_came.wait()

    def _client(self) -> RedisClient:
        if self._redis is None:
            # Past the blocking read's own end: a read that long means a dead connection.
            self._redis = create_reader_redis(
                self.resources.settings, read_timeout_s=BLOCK_MS / 1000 + 5
            )
        return self._redis

    def _dispatch(self, entry_id: str, fields: dict[str, str]) -> None:
        if not self.subscribers and not self.waiters.waiting:
            return  # nobody listens: not even decoded
        batch = events.decode(entry_id, fields)
        if self.waiters.waiting:
            self.waiters.wake(event.task_id for event in batch if event.final)
        for subscriber in list(self.subscribers):
            subscriber.offer(batch)

    def _lost(self, reason: str) -> None:
        if self.connected:
            log.warning("event feed lost: %s", reason)
            self.connected = False
        self._end_subscribers(reason)

    def _end_subscribers(self, reason: str) -> None:
        for subscriber in list(self.subscribers):
            subscriber.end(reason)
        self.subscribers.clear()
