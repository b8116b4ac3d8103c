"""Stopping loops whose client library may lose a cancel (app/loops.py)."""

from __future__ import annotations

import asyncio

from app.loops import cancel_and_wait


async def loses_its_first_cancel_then_blocks(blocked: asyncio.Event) -> None:
    """As a loop does when a cancel is dropped by `wait_for` (Python 3.11) just
    before it starts a blocking read."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        assert current is not None
        current.uncancel()  # the cancel is gone, as the library dropped it
    blocked.set()
    await asyncio.sleep(3600)  # the blocking read


async def test_a_cancel_lost_before_a_blocking_call_still_stops_the_task() -> None:
    blocked = asyncio.Event()
    task = asyncio.create_task(loses_its_first_cancel_then_blocks(blocked))
    await asyncio.sleep(0)
    started_s = asyncio.get_running_loop().time()
    stuck = await cancel_and_wait([task], timeout_s=5)
    assert stuck == set() and task.cancelled()
    assert blocked.is_set(), "the first cancel was lost, as meant"
    assert asyncio.get_running_loop().time() - started_s < 4, "it was stopped, not waited out"


async def test_a_task_that_will_not_stop_is_given_back_after_the_timeout() -> None:
    release = asyncio.Event()

    async def refuses() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                assert current is not None
                current.uncancel()

    task = asyncio.create_task(refuses())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], timeout_s=0.3) == {task}
    assert not task.done()
    release.set()
    assert await cancel_and_wait([task], timeout_s=5) == set()
