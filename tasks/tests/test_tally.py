"""tasks/tally.py on a real Redis: events counted as their entry is appended,
histograms gathered without an object per observation, per-minute counts."""

from __future__ import annotations

import itertools
import uuid

from app.lifespan import Resources
from tasks import events, tally
from tasks.events import Event


def event(name: str, queue: str = "default", kind: str = "echo") -> Event:
    return Event(uuid.uuid4(), name, "pending", queue, kind, None, 1)


async def test_an_entry_is_counted_by_event_queue_and_kind(resources: Resources) -> None:
    batch = [event("created"), event("created"), event("created", "mail", "send")]
    await events.publish(resources, batch)
    await events.publish(resources, [event("failed")], tally.Histograms().take())
    counts = await tally.read(resources)
    assert counts == {
        "e|created|default|echo": 2, "e|created|mail|send": 1, "e|failed|default|echo": 1,
    }  # fmt: skip
    entries = await resources.redis.xrange(resources.keys.events)
    assert [len(events.decode(entry_id, fields)) for entry_id, fields in entries] == [3, 1]
    [(_, minute)] = (await tally.per_minute(resources, minutes=0))[-1:]
    assert minute == {"created|default": 2, "created|mail": 1, "failed|default": 1}
    assert (
        0
        < await resources.redis.ttl(resources.keys.tally_minute(tally._minute()))
        <= (tally.MINUTE_TTL_S)
    )


async def test_a_staged_entry_and_counts_go_in_the_writers_pipeline(
    resources: Resources,
) -> None:
    async with resources.redis.pipeline(transaction=False) as pipe:
        events.stage(resources, [event("started")], tally.Histograms().take())(pipe)
        tally.stage(pipe, resources.keys, {"r|rate_limit": 2})
        await pipe.execute()
    assert await tally.read(resources) == {"e|started|default|echo": 1, "r|rate_limit": 2}


def test_histograms_bucket_and_sum_their_observations() -> None:
    histograms = tally.Histograms()
    assert not histograms
    for seconds in (0.001, 0.004, 0.2, 1000.0):
        histograms.observe(tally.DURATION, "echo", seconds)
    histograms.observe(tally.START_DELAY, "default", 0.02)
    fields = histograms.take()
    assert fields == {
        "h|duration|echo|0": 2,  # <= 0.005
        "h|duration|echo|5": 1,  # <= 0.25
        f"h|duration|echo|{len(tally.BUCKETS_S)}": 1,  # +Inf
        "s|duration|echo": 1000205000,
        "h|start|default|2": 1,  # <= 0.025
        "s|start|default": 20000,
    }
    assert not histograms and histograms.take() == {}


async def test_per_minute_lists_the_last_minutes_oldest_first(resources: Resources) -> None:
    minutes = await tally.per_minute(resources, minutes=15)
    starts = [start for start, _ in minutes]
    assert len(starts) == 16 and starts == sorted(starts)
    assert {b - a for a, b in itertools.pairwise(starts)} == {60}
