"""The doorbell on a real Valkey: pop order (rank, then age; aging), queues in
order, scheduled ids promoted at their time, parked ids of a limited kind, and
what it reports about the ids it holds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from app.config import Settings
from app.lifespan import Resources, close_resources, open_resources
from tasks.doorbell import Bell, Doorbell, Popped

T = 1_700_000_000.0  # a fixed "now", Unix seconds
YEAR_S = 365 * 86400.0


def new_id() -> uuid.UUID:
    return uuid.uuid4()


@asynccontextmanager
async def doorbell_with(resources: Resources, **update: Any) -> AsyncIterator[Doorbell]:
    """A Doorbell on this test's namespace with some settings changed."""
    settings: Settings = resources.settings.model_copy(update=update)
    opened = open_resources(settings)
    try:
        yield Doorbell(opened)
    finally:
        await close_resources(opened)


async def pop_all(bell: Doorbell, queue: str) -> list[Popped]:
    return await bell.pop([queue], count=100, timeout_s=0.05)


async def popped_ids(bell: Doorbell, queue: str) -> list[uuid.UUID]:
    return [item.id for item in await pop_all(bell, queue)]


def ids(bells: list[Bell], order: Callable[[Bell], float] | None = None) -> list[uuid.UUID]:
    return [bell.id for bell in (sorted(bells, key=order) if order else bells)]


# --- order ------------------------------------------------------------------


async def test_ready_ids_pop_lowest_rank_first(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bells = [Bell(new_id(), "q", rank, T) for rank in (2, 0, 3, 1)]
    await doorbell.ring(bells)
    assert await popped_ids(doorbell, "q") == ids(bells, lambda bell: bell.rank)


async def test_within_a_rank_the_oldest_ready_time_pops_first(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bells = [Bell(new_id(), "q", 1, T + offset) for offset in (5.0, -3.0, 0.5, 0.0)]
    await doorbell.ring(bells)
    assert await popped_ids(doorbell, "q") == ids(bells, lambda bell: bell.ready_at_s)


async def test_pop_takes_at_most_count_ids(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bells = [Bell(new_id(), "q", 0, T + offset) for offset in range(5)]
    await doorbell.ring(bells)
    first = await doorbell.pop(["q"], count=2, timeout_s=0.05)
    assert [item.id for item in first] == ids(bells[:2])
    assert await popped_ids(doorbell, "q") == ids(bells[2:])


async def test_without_aging_a_much_newer_rank_0_pops_before_an_old_rank_1(
    resources: Resources,
) -> None:
    doorbell = Doorbell(resources)
    old_rank_1 = Bell(new_id(), "q", 1, T - 100 * YEAR_S)
    new_rank_0 = Bell(new_id(), "q", 0, T)
    await doorbell.ring([old_rank_1, new_rank_0])
    assert await popped_ids(doorbell, "q") == [new_rank_0.id, old_rank_1.id]


async def test_with_aging_a_rank_1_ready_more_than_a_period_earlier_pops_first(
    resources: Resources,
) -> None:
    async with doorbell_with(resources, priority_aging_s=2.0) as doorbell:
        rank_0 = Bell(new_id(), "q", 0, T)
        aged_rank_1 = Bell(new_id(), "q", 1, T - 2.5)
        await doorbell.ring([rank_0, aged_rank_1])
        assert await popped_ids(doorbell, "q") == [aged_rank_1.id, rank_0.id]


async def test_with_aging_a_rank_1_ready_less_than_a_period_earlier_waits(
    resources: Resources,
) -> None:
    async with doorbell_with(resources, priority_aging_s=2.0) as doorbell:
        young_rank_1 = Bell(new_id(), "q", 1, T - 1.5)
        rank_0 = Bell(new_id(), "q", 0, T)
        await doorbell.ring([young_rank_1, rank_0])
        assert await popped_ids(doorbell, "q") == [rank_0.id, young_rank_1.id]


async def test_with_aging_two_periods_make_up_two_ranks(resources: Resources) -> None:
    async with doorbell_with(resources, priority_aging_s=2.0) as doorbell:
        rank_1 = Bell(new_id(), "q", 1, T)
        rank_3 = Bell(new_id(), "q", 3, T - 4.5)
        rank_3_young = Bell(new_id(), "q", 3, T - 3.5)
        await doorbell.ring([rank_3_young, rank_1, rank_3])
        assert await popped_ids(doorbell, "q") == [rank_3.id, rank_1.id, rank_3_young.id]


# --- queues -----------------------------------------------------------------


async def test_pop_takes_from_the_first_listed_queue_that_has_ids(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    high, low = Bell(new_id(), "high", 5, T), Bell(new_id(), "low", 0, T - 60)
    await doorbell.ring([low, high])
    first = await doorbell.pop(["high", "low"], count=10, timeout_s=0.05)
    assert [(item.id, item.queue) for item in first] == [(high.id, "high")]
    second = await doorbell.pop(["high", "low"], count=10, timeout_s=0.05)
    assert [(item.id, item.queue) for item in second] == [(low.id, "low")]


async def test_the_order_of_the_queue_list_decides(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    high, low = Bell(new_id(), "high", 0, T), Bell(new_id(), "low", 0, T)
    await doorbell.ring([high, low])
    popped = await doorbell.pop(["low", "high"], count=10, timeout_s=0.05)
    assert [(item.id, item.queue) for item in popped] == [(low.id, "low")]


async def test_an_empty_first_queue_is_skipped(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "later", 0, T)
    await doorbell.ring([bell])
    popped = await doorbell.pop(["empty", "later"], count=10, timeout_s=0.05)
    assert [(item.id, item.queue) for item in popped] == [(bell.id, "later")]


async def test_a_queue_not_listed_is_never_popped(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    await doorbell.ring([Bell(new_id(), "other", 0, T)])
    assert await doorbell.pop(["mine", "also-mine"], count=10, timeout_s=0.05) == []
    assert await doorbell.waiting("other") == 1


async def test_pop_on_empty_queues_returns_nothing_after_the_timeout(
    resources: Resources,
) -> None:
    doorbell = Doorbell(resources)
    assert await doorbell.pop(["a", "b"], count=10, timeout_s=0.05) == []


async def test_pop_skips_a_member_that_is_not_a_task_id(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T)
    await doorbell.ring([bell])
    await resources.redis.zadd(resources.keys.ready("q"), {"not-a-uuid": 0})
    assert await popped_ids(doorbell, "q") == [bell.id]


# --- score and put_back -----------------------------------------------------


async def test_pop_returns_the_queue_and_the_score(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "mail", 2, T + 0.25)
    await doorbell.ring([bell])
    assert await pop_all(doorbell, "mail") == [Popped(bell.id, "mail", doorbell.score(bell))]


async def test_the_score_is_rank_times_the_aging_period_plus_ready_time(
    resources: Resources,
) -> None:
    async with doorbell_with(resources, priority_aging_s=30.0) as doorbell:
        bell = Bell(new_id(), "q", 3, T + 0.5)
        await doorbell.ring([bell])
        [popped] = await pop_all(doorbell, "q")
        assert popped.score == 3 * 30.0 + T + 0.5


async def test_put_back_restores_the_same_order(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bells = [Bell(new_id(), "q", rank, T + offset) for rank, offset in ((1, 0), (0, 9), (0, 1))]
    await doorbell.ring(bells)
    popped = await pop_all(doorbell, "q")
    await doorbell.put_back(list(reversed(popped)))
    assert await pop_all(doorbell, "q") == popped


async def test_a_put_back_id_keeps_its_place_among_newer_ones(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    old = Bell(new_id(), "q", 0, T)
    await doorbell.ring([old])
    popped = await pop_all(doorbell, "q")
    newer = Bell(new_id(), "q", 0, T + 1)
    await doorbell.ring([newer])
    await doorbell.put_back(popped)
    assert await popped_ids(doorbell, "q") == [old.id, newer.id]


async def test_put_back_returns_each_id_to_its_own_queue(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    a, b = Bell(new_id(), "a", 0, T), Bell(new_id(), "b", 1, T)
    await doorbell.ring([a, b])
    popped = [*await pop_all(doorbell, "a"), *await pop_all(doorbell, "b")]
    await doorbell.put_back(popped)
    assert await pop_all(doorbell, "a") == [popped[0]]
    assert await pop_all(doorbell, "b") == [popped[1]]


# --- schedule and promote_due ----------------------------------------------


async def test_promote_moves_only_ids_due_by_now(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    due = Bell(new_id(), "q", 0, T + 10)
    later = Bell(new_id(), "q", 0, T + 20)
    await doorbell.schedule([later, due])
    assert await doorbell.promote_due(now_s=T + 15) == 1
    assert await popped_ids(doorbell, "q") == [due.id]
    assert await doorbell.present([later]) == {later.id}
    assert await doorbell.waiting("q") == 1


async def test_a_scheduled_id_is_not_ready_before_promotion(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    await doorbell.schedule([Bell(new_id(), "q", 0, T - 10)])
    assert await pop_all(doorbell, "q") == []


async def test_an_id_due_exactly_now_is_promoted(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T + 10)
    await doorbell.schedule([bell])
    assert await doorbell.promote_due(now_s=T + 10) == 1
    assert await popped_ids(doorbell, "q") == [bell.id]


async def test_nothing_due_promotes_nothing(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T + 10)
    await doorbell.schedule([bell])
    assert await doorbell.promote_due(now_s=T) == 0
    assert await pop_all(doorbell, "q") == []
    assert await doorbell.present([bell]) == {bell.id}


async def test_promote_with_no_queue_known_promotes_nothing(resources: Resources) -> None:
    assert await Doorbell(resources).promote_due(now_s=T) == 0


async def test_promote_also_covers_queues_the_queue_list_lost(resources: Resources) -> None:
    """A worker promotes its own queues even when the list no longer names them
    (in a Redis Cluster the list and the scheduled sets live on other nodes)."""
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T + 10)
    await doorbell.schedule([bell])
    await resources.redis.delete(resources.keys.queues)
    assert await doorbell.promote_due(now_s=T + 10) == 0
    assert await doorbell.promote_due(now_s=T + 10, also=["q"]) == 1
    assert await popped_ids(doorbell, "q") == [bell.id]


async def test_a_promoted_id_lands_at_the_place_its_rank_says(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    ready_rank_3 = Bell(new_id(), "q", 3, T - 60)
    scheduled_rank_0 = Bell(new_id(), "q", 0, T + 5)
    await doorbell.ring([ready_rank_3])
    await doorbell.schedule([scheduled_rank_0])
    await doorbell.promote_due(now_s=T + 5)
    assert await pop_all(doorbell, "q") == [
        Popped(scheduled_rank_0.id, "q", doorbell.score(scheduled_rank_0)),
        Popped(ready_rank_3.id, "q", doorbell.score(ready_rank_3)),
    ]


async def test_a_promoted_id_is_scored_with_the_aging_period(resources: Resources) -> None:
    async with doorbell_with(resources, priority_aging_s=2.0) as doorbell:
        ready_rank_0 = Bell(new_id(), "q", 0, T + 10)
        aged_rank_2 = Bell(new_id(), "q", 2, T + 5)  # 5 s older: two periods and more
        await doorbell.ring([ready_rank_0])
        await doorbell.schedule([aged_rank_2])
        await doorbell.promote_due(now_s=T + 10)
        assert await pop_all(doorbell, "q") == [
            Popped(aged_rank_2.id, "q", 2 * 2.0 + T + 5),
            Popped(ready_rank_0.id, "q", T + 10),
        ]


async def test_promote_serves_several_queues_at_once(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    due = {queue: Bell(new_id(), queue, 1, T) for queue in ("a", "b", "c")}
    not_due = Bell(new_id(), "c", 0, T + 100)
    await doorbell.schedule([*due.values(), not_due])
    assert await doorbell.promote_due(now_s=T + 1) == 3
    for queue, bell in due.items():
        assert await popped_ids(doorbell, queue) == [bell.id]
    assert await doorbell.present([not_due]) == {not_due.id}


async def test_promote_moves_at_most_limit_ids_per_queue_oldest_first(
    resources: Resources,
) -> None:
    doorbell = Doorbell(resources)
    bells = [Bell(new_id(), "q", 0, T + offset) for offset in (3, 1, 2)]
    await doorbell.schedule(bells)
    assert await doorbell.promote_due(now_s=T + 10, limit=2) == 2
    assert await popped_ids(doorbell, "q") == [bells[1].id, bells[2].id]
    assert await doorbell.promote_due(now_s=T + 10, limit=2) == 1
    assert await popped_ids(doorbell, "q") == [bells[0].id]


async def test_an_id_is_promoted_once(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T)
    await doorbell.schedule([bell])
    assert await doorbell.promote_due(now_s=T + 1) == 1
    assert await doorbell.promote_due(now_s=T + 1) == 0
    assert await doorbell.waiting("q") == 1


# --- park and unpark --------------------------------------------------------


async def test_unpark_rings_the_lowest_scored_parked_ids_again(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    first = Bell(new_id(), "q", 0, T + 1, kind="mail")
    second = Bell(new_id(), "q", 0, T + 2, kind="mail")
    last = Bell(new_id(), "q", 1, T, kind="mail")
    await doorbell.park([last, second, first])
    assert await doorbell.unpark("mail", 2) == 2
    assert await pop_all(doorbell, "q") == [
        Popped(first.id, "q", doorbell.score(first)),
        Popped(second.id, "q", doorbell.score(second)),
    ]
    assert await doorbell.present([last]) == {last.id}


async def test_unpark_returns_each_id_to_its_own_queue(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    eu = Bell(new_id(), "mail.eu-1", 0, T, kind="mail")
    us = Bell(new_id(), "mail_us", 0, T + 1, kind="mail")
    await doorbell.park([eu, us])
    assert await doorbell.unpark("mail", 5) == 2
    assert await pop_all(doorbell, "mail.eu-1") == [Popped(eu.id, "mail.eu-1", doorbell.score(eu))]
    assert await pop_all(doorbell, "mail_us") == [Popped(us.id, "mail_us", doorbell.score(us))]


async def test_parked_ids_are_not_ready(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T, kind="mail")
    await doorbell.park([bell])
    assert await pop_all(doorbell, "q") == []
    assert await doorbell.present([bell]) == {bell.id}


async def test_unpark_of_another_kind_leaves_them_parked(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T, kind="mail")
    await doorbell.park([bell])
    assert await doorbell.unpark("report", 1) == 0
    assert await pop_all(doorbell, "q") == []


async def test_unpark_of_zero_moves_nothing(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T, kind="mail")
    await doorbell.park([bell])
    assert await doorbell.unpark("mail", 0) == 0
    assert await pop_all(doorbell, "q") == []
    assert await doorbell.unpark("mail", 1) == 1


async def test_unpark_of_an_empty_set_returns_zero(resources: Resources) -> None:
    assert await Doorbell(resources).unpark("mail", 3) == 0


async def test_slots_freed_unparks_one_per_finished_task_of_a_limited_kind(
    resources: Resources,
) -> None:
    async with doorbell_with(resources, kind_concurrency={"mail": 2}) as doorbell:
        parked = [Bell(new_id(), "q", 0, T + offset, kind="mail") for offset in range(4)]
        await doorbell.park(parked)
        await doorbell.slots_freed(["mail", "echo", "mail"])
        assert await popped_ids(doorbell, "q") == ids(parked[:2])
        assert await doorbell.present(parked[2:]) == set(ids(parked[2:]))


async def test_slots_freed_ignores_kinds_without_a_limit(resources: Resources) -> None:
    async with doorbell_with(resources, kind_concurrency={"mail": 2}) as doorbell:
        unlimited = Bell(new_id(), "q", 0, T, kind="report")
        await doorbell.park([unlimited])
        await doorbell.slots_freed(["report", "report"])
        assert await pop_all(doorbell, "q") == []
        assert await doorbell.present([unlimited]) == {unlimited.id}


# --- what the doorbell holds ------------------------------------------------


async def test_present_finds_ready_scheduled_and_parked_ids_only(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    ready = Bell(new_id(), "q", 0, T)
    scheduled = Bell(new_id(), "q", 2, T + 60)
    parked = Bell(new_id(), "q", 1, T, kind="mail")
    absent = Bell(new_id(), "q", 0, T, kind="mail")
    await doorbell.ring([ready])
    await doorbell.schedule([scheduled])
    await doorbell.park([parked])
    found = await doorbell.present([ready, scheduled, parked, absent])
    assert found == {ready.id, scheduled.id, parked.id}


async def test_present_forgets_a_popped_id(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T)
    await doorbell.ring([bell])
    await pop_all(doorbell, "q")
    assert await doorbell.present([bell]) == set()


async def test_present_looks_in_the_bells_own_queue(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "a", 0, T)
    await doorbell.ring([bell])
    assert await doorbell.present([Bell(bell.id, "b", 0, T)]) == set()


async def test_waiting_counts_ready_and_scheduled_of_that_queue_only(
    resources: Resources,
) -> None:
    doorbell = Doorbell(resources)
    await doorbell.ring([Bell(new_id(), "q", 0, T), Bell(new_id(), "q", 4, T)])
    await doorbell.schedule([Bell(new_id(), "q", 0, T + 60)])
    await doorbell.ring([Bell(new_id(), "other", 0, T)])
    await doorbell.schedule([Bell(new_id(), "other", 0, T + 60)])
    assert await doorbell.waiting("q") == 3
    assert await doorbell.waiting("other") == 2
    assert await doorbell.waiting("unknown") == 0


async def test_an_id_rung_twice_waits_once(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    bell = Bell(new_id(), "q", 0, T)
    await doorbell.ring([bell])
    await doorbell.ring([bell])
    assert await doorbell.waiting("q") == 1


async def test_known_queues_lists_queues_rung_or_scheduled(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    assert await doorbell.known_queues() == set()
    await doorbell.ring([Bell(new_id(), "rung", 0, T)])
    await doorbell.schedule([Bell(new_id(), "scheduled", 0, T + 60)])
    assert await doorbell.known_queues() == {"rung", "scheduled"}


async def test_ringing_nothing_changes_nothing(resources: Resources) -> None:
    doorbell = Doorbell(resources)
    await doorbell.ring([])
    await doorbell.schedule([])
    await doorbell.park([])
    await doorbell.put_back([])
    assert await doorbell.known_queues() == set()
