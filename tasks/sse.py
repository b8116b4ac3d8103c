"""GET /events: the task event stream as Server-Sent Events.

Each connection is a subscriber of the API process's event feed with a
bounded queue: a consumer that falls more than EVENTS_SUBSCRIBER_QUEUE events
behind is dropped with a final `dropped` event (and resumes with
Last-Event-ID), so nobody buffers without bound. With Last-Event-ID the events
after it are replayed from the stream first, then the live ones follow, with
no gap and no repeat. A comment every EVENTS_HEARTBEAT_SECONDS keeps proxies
from closing an idle stream. Losing Redis ends the stream with a final
`unavailable` event, never an error status. With `max_seconds` the stream
ends by itself once that long has passed, with a final `timeout` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from app.errors import StoreUnavailable, is_store_error
from tasks import events
from tasks.events import Event, Position
from tasks.exceptions import InvalidLastEventId
from tasks.feed import EventFeed

log = logging.getLogger("taskline.api")

REPLAY_PAGE = 200
RETRY_MS = 2000


@dataclass(frozen=True, slots=True)
class Filter:
    queue: str | None = None
    kind: str | None = None
    owner: str | None = None
    status: str | None = None
    task_id: uuid.UUID | None = None

    def matches(self, event: Event) -> bool:
        return (
            (self.task_id is None or event.task_id == self.task_id)
            and (self.queue is None or event.queue == self.queue)
            and (self.kind is None or event.kind == self.kind)
            and (self.owner is None or event.owner == self.owner)
            and (self.status is None or event.status == self.status)
        )


@dataclass(frozen=True, slots=True)
class _End:
    name: str  # the final event: `dropped` or `unavailable`
    detail: str


class Subscription:
    """One GET /events connection, fed by the feed; at most `limit` events queued."""

    def __init__(self, feed: EventFeed, where: Filter, limit: int) -> None:
        self.feed, self.where, self.limit = feed, where, limit
        self.queue: asyncio.Queue[Event | _End] = asyncio.Queue()
        self.ended = False

    def offer(self, batch: Sequence[Event]) -> None:
        if self.ended:
            return
        for event in batch:
            if not self.where.matches(event):
                continue
            if self.queue.qsize() >= self.limit:
                self._finish(_End("dropped", "too slow: more than the queue holds fell behind;"
                                  " reconnect with Last-Event-ID"))  # fmt: skip
                return
            self.queue.put_nowait(event)

    def end(self, reason: str) -> None:
        self._finish(_End("unavailable", f"{reason}; reconnect with Last-Event-ID"))

    def _finish(self, end: _End) -> None:
        if self.ended:
            return
        self.ended = True
        self.feed.subscribers.discard(self)
        while not self.queue.empty():  # what was queued is replayed on resume
            self.queue.get_nowait()
        self.queue.put_nowait(end)


async def open_stream(
    feed: EventFeed, where: Filter, last_event_id: str | None, max_s: float | None = None
) -> AsyncIterator[str]:
    """The SSE body, ending after `max_s` if given, once the feed follows the
    stream; StoreUnavailable (503) if it cannot, Redis being down."""
    after = events.position(last_event_id) if last_event_id else None
    if last_event_id and after is None:
        raise InvalidLastEventId(last_event_id)
    if feed.closing:
        raise StoreUnavailable("api", "the API is shutting down")
    subscription = Subscription(feed, where, feed.resources.settings.events_subscriber_queue)
    if not await feed.follow(subscription):
        raise StoreUnavailable("redis", "the event feed is not connected")
    if after is None:
        feed.subscribers.add(subscription)  # live from now on
    ends_at = None if max_s is None else asyncio.get_running_loop().time() + max_s
    return _stream(feed, subscription, after, ends_at)


async def _stream(
    feed: EventFeed, sub: Subscription, after: Position | None, ends_at: float | None
) -> AsyncIterator[str]:
    heartbeat_s = feed.resources.settings.events_heartbeat_s
    yield f"retry: {RETRY_MS}\n\n"
    try:
        if after is not None:
            async for chunk, seen in _replay(feed, sub, after):
                after = seen
                yield chunk
        while True:
            item = await _next(sub, heartbeat_s, ends_at)
            if item is None:
                yield ": keep-alive\n\n"
                continue
            if isinstance(item, _End):
                yield _control(item.name, {"detail": item.detail})
                return
            found = events.position(item.event_id)
            if after is None or (found is not None and found > after):
                yield _message(item)
    finally:
        feed.subscribers.discard(sub)
        feed.streams.discard(sub)
        sub.ended = True


async def _next(
    sub: Subscription, heartbeat_s: float, ends_at: float | None
) -> Event | _End | None:
    """The next event; None when a heartbeat is due first; at `ends_at`, the `timeout` end."""
    wait_s = heartbeat_s
    if ends_at is not None:
        wait_s = min(heartbeat_s, max(0.0, ends_at - asyncio.get_running_loop().time()))
    try:
        async with asyncio.timeout(wait_s):
            return await sub.queue.get()
    except TimeoutError:
        if wait_s < heartbeat_s:  # the end came before the heartbeat
            return _End("timeout", "max_seconds ran out; reconnect with Last-Event-ID to go on")
        return None


async def _replay(
    feed: EventFeed, sub: Subscription, after: Position
) -> AsyncIterator[tuple[str, Position]]:
    """Events after `after` from the stream; then the subscription goes live, and
    what came in between is read once more (the live side skips repeats)."""
    try:
        if await _trimmed(feed, after):
            yield _control("gap", {"detail": "older events were trimmed from the stream"}), after
        async for event in _range(feed, after):
            after = events.position(event.event_id) or after
            if sub.where.matches(event):
                yield _message(event), after
        feed.subscribers.add(sub)
        async for event in _range(feed, after):
            after = events.position(event.event_id) or after
            if sub.where.matches(event):
                yield _message(event), after
    except Exception as error:
        if not is_store_error(error):
            raise
        sub.end(f"redis is unavailable ({type(error).__name__})")


async def _trimmed(feed: EventFeed, after: Position) -> bool:
    oldest: Any = await feed.resources.redis.xrange(feed.resources.keys.events, count=1)
    if not oldest:
        return False
    first = events.position(oldest[0][0] + ":0")
    return first is not None and first[:2] > after[:2]


async def _range(feed: EventFeed, after: Position) -> AsyncIterator[Event]:
    """Events after `after`, read from the stream a page at a time."""
    key, redis = feed.resources.keys.events, feed.resources.redis
    start = f"{after[0]}-{after[1]}"  # that entry again: it may hold later events
    while True:
        entries: Any = await redis.xrange(key, min=start, count=REPLAY_PAGE)
        for entry_id, fields in entries:
            for event in events.decode(entry_id, fields):
                found = events.position(event.event_id)
                if found is not None and found > after:
                    yield event
        if len(entries) < REPLAY_PAGE:
            return
        start = "(" + entries[-1][0]


def _message(event: Event) -> str:
    data = json.dumps(event.as_dict(), separators=(",", ":"))
    return f"id: {event.event_id}\ndata: {data}\n\n"


def _control(name: str, body: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
