"""/metrics on declared queues and HTTP consumers: per queue its undelivered,
leased and dead messages and its oldest unacked message's age, per consumer
its last lease and last poll, the same from every API process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from app.config import Settings
from app.lifespan import Resources
from metrics.tests.test_metrics import Samples, scrape, value
from tasks import repository
from tasks.tests.fixtures import app_client
from topics import presence


async def call(http: httpx.AsyncClient, path: str, body: Any = None, status: int = 200) -> Any:
    answer = await http.post(path, json=body)
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


def messages(found: Samples, queue: str) -> dict[str, float]:
    states = ("undelivered", "leased", "dead")
    return {s: value(found, "taskline_queue_messages", queue=queue, state=s) for s in states}


async def test_declared_queues_and_consumers(settings: Settings, resources: Resources) -> None:
    async with app_client(settings) as http, app_client(settings) as other:
        await call(http, "/queues", {"id": "dead"}, 201)
        body = {"id": "work", "message_max_deliveries": 1, "dead_queue_id": "dead"}
        await call(http, "/queues", body, 201)
        await call(http, "/queues", {"id": "quiet"}, 201)
        put = {"messages": [{"data": n} for n in range(4)]}
        await call(http, "/queues/work/messages", put, 201)
        await asyncio.sleep(0.05)  # an age to see
        before_s = time.time()
        lease = {"max_messages": 2, "consumer": "billing-1"}
        first, _ = (await call(http, "/queues/work/lease", lease))["messages"]
        receipt = {"receipt_handle": first["receipt_handle"]}
        await call(http, f"/messages/{first['id']}/nack", receipt, 204)  # its last delivery
        await call(other, "/queues/quiet/lease", {"consumer": "idle-1"})  # another process
        after_s = time.time()
        found, elsewhere = await scrape(http), await scrape(other)

    assert messages(found, "work") == {"undelivered": 2, "leased": 1, "dead": 1}
    assert messages(found, "dead") == {"undelivered": 1, "leased": 0, "dead": 0}
    assert messages(found, "quiet") == {"undelivered": 0, "leased": 0, "dead": 0}
    assert value(found, "taskline_queue_dead_messages", queue="work") == 1
    assert value(found, "taskline_queue_oldest_unacked_message_age_seconds", queue="work") > 0
    assert value(found, "taskline_queue_oldest_unacked_message_age_seconds", queue="quiet") == 0
    dead_lettered = {"event": "dead_lettered", "queue": "dead", "kind": "message"}
    assert value(found, "taskline_task_events_total", **dead_lettered) == 1

    billing = {"queue": "work", "consumer": "billing-1"}
    for name in ("last_lease", "last_poll"):
        at_s = value(found, f"taskline_consumer_{name}_timestamp_seconds", **billing)
        assert before_s <= at_s <= after_s, name
    idle = {"queue": "quiet", "consumer": "idle-1"}
    assert before_s <= value(found, "taskline_consumer_last_poll_timestamp_seconds", **idle)
    assert ("taskline_consumer_last_lease_timestamp_seconds", frozenset(idle.items())) not in found
    gauges = ("taskline_queue_messages", "taskline_consumer_last_poll_timestamp_seconds")
    assert {k: v for k, v in found.items() if k[0] in gauges} == {
        k: v for k, v in elsewhere.items() if k[0] in gauges
    }


async def test_dead_letters_stay_counted_once_the_counts_are_folded(
    settings: Settings, resources: Resources
) -> None:
    """The dead letters come from the trigger-kept counts: folding the changes
    into the counters (the reconcile does it) changes nothing."""
    async with app_client(settings) as http:
        await call(http, "/queues", {"id": "once", "message_max_deliveries": 1}, 201)
        await call(http, "/queues/once/messages", {"messages": [{"data": 1}, {"data": 2}]}, 201)
        for message in (await call(http, "/queues/once/lease", {"max_messages": 2}))["messages"]:
            receipt = {"receipt_handle": message["receipt_handle"]}
            await call(http, f"/messages/{message['id']}/nack", receipt, 204)
        unfolded = messages(await scrape(http), "once")
        async with repository.driver_connection(resources.engine) as conn:
            await repository.fold_count_changes(conn=conn)
        folded = messages(await scrape(http), "once")
        await call(http, "/queues/once/redrive", None)
        redriven = messages(await scrape(http), "once")
    assert unfolded == folded == {"undelivered": 0, "leased": 0, "dead": 2}
    assert redriven == {"undelivered": 2, "leased": 0, "dead": 0}


async def test_consumers_unseen_for_long_drop_out(resources: Resources) -> None:
    now_s = time.time()
    old_s = now_s - presence.CONSUMER_KEEP_S - 60
    async with resources.redis.pipeline(transaction=False) as pipe:
        presence.stage_lease(resources, "work", "gone", took=True, now_s=old_s)(pipe)
        presence.stage_lease(resources, "work", "here", took=False, now_s=now_s)(pipe)
        await pipe.execute()
    [here] = await presence.seen(resources)
    assert (here.queue, here.name, here.polled_at_s, here.leased_at_s) == (
        "work", "here", now_s, None
    )  # fmt: skip
    # and the write of "here" trimmed "gone" from Redis, not only from the answer
    assert await resources.redis.zcard(resources.keys.consumers_polled) == 1


async def test_only_the_consumers_seen_last_are_kept(resources: Resources) -> None:
    now_s = time.time()
    async with resources.redis.pipeline(transaction=False) as pipe:
        for n in range(presence.MAX_CONSUMERS + 5):
            presence.stage_lease(resources, "work", f"c{n}", took=False, now_s=now_s + n)(pipe)
        await pipe.execute()
    seen = await presence.seen(resources, now_s=now_s)
    assert len(seen) == presence.MAX_CONSUMERS
    assert "c0" not in {c.name for c in seen} and f"c{presence.MAX_CONSUMERS + 4}" in {
        c.name for c in seen
    }
