"""tasks/presence.py: workers' reports expire unless renewed; a stopped worker withdraws."""

from __future__ import annotations

from app.lifespan import Resources
from tasks import presence
from tasks.tests.fixtures import wait_for


def report(worker_id: str) -> presence.WorkerReport:
    return presence.WorkerReport(
        id=worker_id, host="h", pid=1, queues=["default"], slots_busy=2, slots_total=10,
        started_at_s=0.0,
    )  # fmt: skip


async def test_reports_are_listed_until_they_expire_or_are_withdrawn(
    resources: Resources,
) -> None:
    await presence.report(resources, report("b"), ttl_s=30)
    await presence.report(resources, report("a"), ttl_s=0.2)
    listed = await presence.live_workers(resources)
    assert [w.id for w in listed] == ["a", "b"]
    assert (listed[0].slots_busy, listed[0].slots_total, listed[0].queues) == (2, 10, ["default"])
    assert listed[0].heartbeat_age_s < 30

    async def only_b() -> bool:  # past a's TTL, Redis drops its key
        return [w.id for w in await presence.live_workers(resources)] == ["b"]

    await wait_for(only_b, what="a's report to expire")
    await presence.withdraw(resources, "b")
    assert await presence.live_workers(resources) == []
    assert await resources.redis.zcard(resources.keys.workers) == 1  # a: pruned at next report
    await presence.report(resources, report("c"), ttl_s=0.2)
    assert await resources.redis.zrange(resources.keys.workers, 0, -1) == ["c"]


async def test_a_report_that_is_not_ours_is_skipped(resources: Resources) -> None:
    await presence.report(resources, report("a"), ttl_s=30)
    await resources.redis.zadd(resources.keys.workers, {"junk": 1e12})
    await resources.redis.set(resources.keys.worker("junk"), "not json")
    assert [w.id for w in await presence.live_workers(resources)] == ["a"]
