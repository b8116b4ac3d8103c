"""`AsyncClient.consume`: `consuming.py`'s loop for asyncio. A stop cancels a
lease that is still waiting (the server then takes nothing for it); a handler
that has started is finished, never cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from taskline.client import calls
from taskline.client.consuming import (
    EXTEND_EVERY,
    Backoff,
    Consumed,
    Held,
    Options,
    retry_delay_s,
)
from taskline.client.errors import Refused, TasklineError
from taskline.client.signals import stop_on_signals
from topics.message_schemas import LeasedMessage

if TYPE_CHECKING:
    from taskline.client.aio import AsyncClient

log = logging.getLogger("taskline.client")

Handler = Callable[[LeasedMessage], Awaitable[object]]


async def visibility_s(client: AsyncClient, queue: str, visibility_seconds: float | None) -> float:
    if visibility_seconds is not None:
        return visibility_seconds
    return float((await client.call(calls.get_queue(queue))).ack_deadline_seconds)


async def consume(
    client: AsyncClient, options: Options, handler: Handler, stop: asyncio.Event
) -> Consumed:
    loop = asyncio.get_running_loop()
    done = Consumed()
    backoff = Backoff()
    with stop_on_signals(lambda: loop.call_soon_threadsafe(stop.set)):
        while not stop.is_set():
            try:
                messages = await _lease_unless_stopped(client, options, stop)
            except Refused:
                raise  # the queue is gone, or the options are wrong: retrying will not help
            except TasklineError as error:
                log.warning("lease from %s failed: %s", options.queue, error)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next_s())
                continue
            backoff.reset()
            await _handle_all(client, messages, handler, options.visibility_s, stop, done)
    return done


async def _lease_unless_stopped(
    client: AsyncClient, options: Options, stop: asyncio.Event
) -> list[LeasedMessage]:
    """The lease's messages, or [] if `stop` was set while it waited (then it is
    cancelled: the server sees the hang-up and takes nothing for it)."""
    leasing = asyncio.ensure_future(client.lease(options.queue, **options.lease_args()))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({leasing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not leasing.done():
        leasing.cancel()
        with suppress(asyncio.CancelledError):
            await leasing
    if leasing.cancelled():
        return []
    return leasing.result()  # what a lease answered as the stop came is given back


async def _handle_all(
    client: AsyncClient,
    messages: list[LeasedMessage],
    handler: Handler,
    visibility_s: float,
    stop: asyncio.Event,
    done: Consumed,
) -> None:
    held = Held(messages)
    try:
        async with _extending(client, held, visibility_s):
            for message in messages:
                if stop.is_set():
                    break
                try:
                    await handler(message)
                except Exception:
                    log.exception("handler failed on message %s: nacked", message.id)
                    await _settle(client, held, message, done, ok=False, failed=True)
                else:
                    await _settle(client, held, message, done, ok=True)
    finally:  # stopping, or the handler raised past Exception: give back the rest
        for message in held.all():
            await _settle(client, held, message, done, ok=False)


async def _settle(
    client: AsyncClient,
    held: Held,
    message: LeasedMessage,
    done: Consumed,
    *,
    ok: bool,
    failed: bool = False,
) -> None:
    if not held.release(message):  # the extender found the delivery over
        done.lost += 1
        return
    try:
        await (
            client.ack(message)
            if ok
            else client.nack(message, delay_seconds=retry_delay_s(message, failed))
        )
    except TasklineError as error:
        done.lost += 1
        log.warning("%s of message %s failed: %s", "ack" if ok else "nack", message.id, error)
    else:
        if ok:
            done.acked += 1
        else:
            done.nacked += 1


@asynccontextmanager
async def _extending(client: AsyncClient, held: Held, visibility_s: float) -> AsyncIterator[None]:
    """A task that extends every held message by `visibility_s`, every third of it."""

    async def extend_all() -> None:
        while True:
            await asyncio.sleep(visibility_s * EXTEND_EVERY)
            for message in held.all():
                await _extend_one(client, held, message, visibility_s)

    task = asyncio.create_task(extend_all(), name="taskline-extend")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _extend_one(
    client: AsyncClient, held: Held, message: LeasedMessage, visibility_s: float
) -> None:
    try:
        await client.extend(message, visibility_seconds=visibility_s)
    except Refused as error:  # the delivery is over: stop extending it
        if held.release(message):
            log.warning("message %s is no longer held: %s", message.id, error)
    except TasklineError as error:
        log.warning("extending message %s failed: %s", message.id, error)
