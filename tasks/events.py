"""The task event log: every state change, announced after its commit.

Writers (the intake, the worker's claim and recorder, the sweeps, the API's
cancel and re-drive, topics/' publishing and HTTP consumers) hand `publish` a
batch of events; the batch becomes ONE entry of a capped Redis stream (`XADD
... MAXLEN ~ EVENT_STREAM_MAX_ENTRIES`, in a script that also adds the batch to
the counters /metrics reads: see tasks/tally.py), so a batch of 500 state
changes costs one round trip, or none of its own when staged into a pipeline
the writer sends anyway (`stage`).

An event is a hint, never the truth: publishing may fail (it is logged, and
the state change stands), an entry may be trimmed or lost with a Redis
restart. Whoever acts on an event re-reads the row in PostgreSQL.

An entry holds `t` (Unix time, seconds) and `e`, a JSON list of events, each
`[task id, event, status, queue, kind, owner, attempt]`. An event's id is
`<entry id>:<index>`, which orders events and lets a reader resume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from typing import Any, NamedTuple

from pydantic_core import to_json

from app.lifespan import Resources
from app.loops import stop_if_canceled
from tasks import tally

log = logging.getLogger("taskline.events")

CREATED, STARTED, COMPLETED, FAILED = "created", "started", "completed", "failed"
RETRIED, CANCELED, EXPIRED = "retried", "canceled", "expired"
REDRIVEN, RELEASED = "redriven", "released"
# A message (topics/) whose last delivery failed, moved to its queue's dead
# queue: pending there, `queue` the dead queue, `attempt` 0.
DEAD_LETTERED = "dead_lettered"
EVENTS = (
    CREATED, STARTED, COMPLETED, FAILED, RETRIED, CANCELED, EXPIRED, REDRIVEN, RELEASED,
    DEAD_LETTERED,
)  # fmt: skip
FINAL_STATUSES = frozenset({"completed", "failed", "canceled", "expired"})


class Event(NamedTuple):  # a tuple: cheap to make by the thousand on the hot path
    task_id: uuid.UUID
    event: str
    status: str
    queue: str
    kind: str
    owner: str | None
    attempt: int
    at_s: float = 0.0  # set when read back from the stream
    event_id: str = ""  # `<entry id>:<index>`, set when read back

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """The event as a client sees it (GET /events)."""
        return {
            "id": self.event_id, "task_id": str(self.task_id), "event": self.event,
            "status": self.status, "queue": self.queue, "kind": self.kind,
            "owner": self.owner, "attempt": self.attempt, "at": self.at_s,
        }  # fmt: skip


# Building events from what the writers have in hand -------------------------


def of_row(row: Any, event: str) -> Event:
    """From a whole task row (an asyncpg record or the ORM object)."""
    get: Callable[[str], Any] = row.__getitem__ if hasattr(row, "keys") else row.__getattribute__
    return Event(
        get("id"), event, str(get("status")), get("queue"), get("kind"), get("owner"),
        get("attempts"),
    )  # fmt: skip


def of_created(rows: Iterable[Any]) -> list[Event]:
    """From the rows of tasks just created (pending, no attempt yet): each one
    created. A third of of_row's time, on every new task."""
    return [Event(r["id"], CREATED, "pending", r["queue"], r["kind"], r["owner"], 0) for r in rows]


# What a pending row means depends on who made it pending.
_BY_STATUS = {"completed": COMPLETED, "failed": FAILED, "canceled": CANCELED, "expired": EXPIRED}


def of_recorded(recorded: Iterable[Any], *, pending: str) -> list[Event]:
    """From repository.Recorded rows (outcomes, give-backs, sweeps); a row that is
    pending again is announced as `pending` (retried or released), or as
    dead_lettered (see _of_recorded)."""
    return [_of_recorded(r, pending) for r in recorded]


def _of_recorded(r: Any, pending: str) -> Event:
    event = _BY_STATUS.get(r.status, pending)
    if event == RETRIED and r.attempt == 0:
        # A failed attempt leaves a retried task at the attempt it used (1 or
        # more); only the dead-letter trigger (migration 0010) starts a message
        # over at 0, in its dead queue, in the statement that failed it.
        event = DEAD_LETTERED
    return Event(r.task_id, event, r.status, r.bell.queue, r.bell.kind, r.owner, r.attempt)


def of_claimed(claimed: Iterable[Any]) -> list[Event]:
    """From repository.ClaimedTask rows: each one started."""
    return [
        Event(t.id, STARTED, "processing", t.bell.queue, t.kind, t.owner, t.attempt)
        for t in claimed
    ]


# Publishing ------------------------------------------------------------------


def encode(events: Sequence[Event]) -> dict[Any, Any]:
    """The entry's fields; `e` is compact JSON, made by pydantic_core's to_json in
    half of json.dumps's time. Ids go as strings: to_json takes asyncpg's UUID
    subclass ten times slower than a str."""
    rows = [
        [str(e.task_id), e.event, e.status, e.queue, e.kind, e.owner, e.attempt] for e in events
    ]
    return {"t": f"{time.time():.6f}", "e": to_json(rows)}


def stage(
    resources: Resources, events: Sequence[Event], counts: Counter[str] | None = None
) -> Callable[[Any], None]:
    """A step that adds the batch's entry (counted by Redis as it is appended,
    tasks/tally.py) and other `counts` to a pipeline the caller sends anyway."""

    def add(pipe: Any) -> None:
        if events:
            tally.stage_entry(
                pipe, resources.keys, encode(events),
                max_entries=resources.settings.event_stream_max_entries,
            )  # fmt: skip
        if counts:
            tally.stage(pipe, resources.keys, counts)

    return add


async def publish(
    resources: Resources, events: Sequence[Event], counts: Counter[str] | None = None
) -> None:
    """Announce a batch, counted, in one round trip. Never raises: the state
    change is committed already, and whoever waits on it re-reads the row."""
    if not events and not counts:
        return
    try:
        if not counts:  # the entry alone: no pipeline to build
            await tally.stage_entry(
                resources.redis, resources.keys, encode(events),
                max_entries=resources.settings.event_stream_max_entries,
            )  # fmt: skip
            return
        async with resources.redis.pipeline(transaction=False) as pipe:
            stage(resources, events, counts)(pipe)
            await pipe.execute()
    except Exception as error:
        log.warning("could not publish %d event(s): %s", len(events), error)


MAX_ENTRY_EVENTS = 1000
# Under load the `started` events wait for the next final ones (the recorder
# writes every 5 ms or so then) and share their entry: a drain sent 1,600
# entries instead of 2,550 for 20,000 tasks, with Valkey's CPU per task down
# by about an eighth. 25 ms late is still live for a dashboard or a stream.
LINGER_S = 0.025


class Publisher:
    """Publishing off the hot path, for the worker: `publish` only appends, and
    one loop sends whatever has gathered as one entry, so the claim and the
    recorder never wait on Redis for an event. A final event (someone may be
    waiting for it) goes at once, with whatever else has gathered; other events
    go at most one entry per `linger_s` (LINGER_S), so under load the `started`
    events of several claims share an entry (a round trip per entry costs the
    worker more than the rest of the event). Bounded: past
    `max_pending` events (Redis down for long), new ones are dropped and logged."""

    def __init__(
        self, resources: Resources, *, max_pending: int = 100_000, linger_s: float = LINGER_S
    ) -> None:
        self._resources = resources
        self._linger_s = linger_s
        self._max_pending = max_pending
        self._pending: list[Event] = []
        self._wake = asyncio.Event()
        self._now = asyncio.Event()  # a final event waits: no lingering
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0
        self._sent_at_s = 0.0
        self.histograms = tally.Histograms()  # sent every tally.COUNTS_EVERY_S

    def observe(self, histogram: str, label: str, seconds: float) -> None:
        """Gather a histogram observation (tasks/tally.py)."""
        self.histograms.observe(histogram, label, seconds)

    def publish(self, batch: Sequence[Event]) -> None:
        if not batch:
            return
        if len(self._pending) >= self._max_pending:
            if not self.dropped:
                log.warning("events are not getting out; dropping new ones until they do")
            self.dropped += len(batch)
            return
        self._pending.extend(batch)
        self._idle.clear()
        self._wake.set()
        if any(event.status in FINAL_STATUSES for event in batch):
            self._now.set()

    async def run(self) -> None:
        while True:
            with suppress(TimeoutError):  # counts gathered without events go out in time
                async with asyncio.timeout(tally.COUNTS_EVERY_S if self.histograms else None):
                    await self._wake.wait()
            pause_s = self._sent_at_s + self._linger_s - time.monotonic()
            if pause_s > 0 and not self._now.is_set():  # let the next batches join
                with suppress(TimeoutError):
                    async with asyncio.timeout(pause_s):
                        await self._now.wait()
            self._wake.clear()
            self._now.clear()
            while self._pending:
                batch = self._pending[:MAX_ENTRY_EVENTS]
                del self._pending[:MAX_ENTRY_EVENTS]
                self._sent_at_s = time.monotonic()
                counts = self._counts_due()  # logs a failure; never raises:
                await publish(self._resources, batch, counts)
                stop_if_canceled()
            if self.histograms.due(tally.COUNTS_EVERY_S):
                await publish(self._resources, [], self.histograms.take())
            self.dropped = 0
            self._idle.set()

    def _counts_due(self) -> Counter[str] | None:
        return self.histograms.take() if self.histograms.due(tally.COUNTS_EVERY_S) else None

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every event handed in has been sent (or failed), then send
        the counts gathered."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        await publish(self._resources, [], self.histograms.take())
        return True


# Reading back ----------------------------------------------------------------


def decode(entry_id: str, fields: dict[str, str]) -> list[Event]:
    """The events of one stream entry; an entry that is not ours gives none."""
    try:
        at_s = float(fields["t"])
        rows = json.loads(fields["e"])
        return [_decoded(row, at_s, f"{entry_id}:{index}") for index, row in enumerate(rows)]
    except (KeyError, ValueError, TypeError, IndexError):
        log.warning("skipped stream entry %s: not a batch of task events", entry_id)
        return []


def _decoded(row: list[Any], at_s: float, event_id: str) -> Event:
    task_id, name, status, queue, kind, owner, attempt = row
    return Event(uuid.UUID(task_id), name, status, queue, kind, owner, int(attempt), at_s, event_id)


Position = tuple[int, int, int]
EVENT_ID_PATTERN = r"^[0-9]{1,20}(-[0-9]{1,20})?(:[0-9]{1,10})?$"


def position(event_id: str) -> Position | None:
    """`<ms>-<seq>:<index>` as a comparable tuple (a bare entry id: after all of
    that entry's events); None if malformed."""
    entry, _, index = event_id.partition(":")
    ms, _, seq = entry.partition("-")
    try:
        return int(ms), int(seq or 0), int(index) if index else 1 << 30
    except ValueError:
        return None
