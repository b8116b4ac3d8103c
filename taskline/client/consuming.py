"""`Client.consume`: lease, run the handler, ack on success, nack on an
exception; extend the deadlines of what it holds in the background while a
handler runs long; on SIGTERM/SIGINT stop leasing, finish the message in hand,
give back the rest, return. (`AsyncClient.consume` is `aconsuming.py`.)"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskline.client import calls
from taskline.client.errors import Refused, TasklineError
from taskline.client.signals import stop_on_signals
from topics.message_schemas import LeasedMessage

if TYPE_CHECKING:
    from taskline.client.sync import Client

log = logging.getLogger("taskline.client")

RETRY_FIRST_S = 0.5  # after a lease that failed (unreachable, 5xx), doubling up to:
RETRY_MAX_S = 10.0
EXTEND_EVERY = 1 / 3  # of the deadline
FAILED_DELAY_MAX_S = 300.0  # a failed message comes back after 1 s, 2 s, 4 s ... up to this


@dataclass
class Consumed:
    """What `consume` did before it returned."""

    acked: int = 0
    nacked: int = 0
    lost: int = 0  # an ack or nack refused or failed: the message comes back by its deadline


@dataclass(frozen=True)
class Options:
    queue: str
    max_messages: int
    wait_seconds: float
    visibility_s: float
    consumer: str

    def lease_args(self) -> dict[str, Any]:
        return {
            "max_messages": self.max_messages,
            "wait_seconds": self.wait_seconds,
            "visibility_seconds": self.visibility_s,
            "consumer": self.consumer,
        }


class Backoff:
    def __init__(self) -> None:
        self._next_s = RETRY_FIRST_S

    def next_s(self) -> float:
        delay_s, self._next_s = self._next_s, min(self._next_s * 2, RETRY_MAX_S)
        return delay_s

    def reset(self) -> None:
        self._next_s = RETRY_FIRST_S


class Held:
    """The messages of one lease not yet acked or nacked (the extender's list)."""

    def __init__(self, messages: list[LeasedMessage]) -> None:
        self._lock = threading.Lock()
        self._messages = {message.id: message for message in messages}

    def release(self, message: LeasedMessage) -> bool:
        """Take it off the list: False if it was not on it."""
        with self._lock:
            return self._messages.pop(message.id, None) is not None

    def all(self) -> list[LeasedMessage]:
        with self._lock:
            return list(self._messages.values())


def retry_delay_s(message: LeasedMessage, failed: bool) -> float:
    """0 for a message given back unhandled; else doubling with each delivery, so that
    one that always fails does not spin through its deliveries."""
    if not failed:
        return 0.0
    return min(2.0 ** (message.delivery_attempts - 1), FAILED_DELAY_MAX_S)


def visibility_s(client: Client, queue: str, visibility_seconds: float | None) -> float:
    """The deadline to lease with, so that extensions know it: the queue's if not given."""
    if visibility_seconds is not None:
        return visibility_seconds
    return float(client.call(calls.get_queue(queue)).ack_deadline_seconds)


def consume(
    client: Client,
    options: Options,
    handler: Callable[[LeasedMessage], object],
    stop: threading.Event,
) -> Consumed:
    done = Consumed()
    backoff = Backoff()
    with stop_on_signals(stop.set):
        while not stop.is_set():
            try:
                messages = client.lease(options.queue, **options.lease_args())
            except Refused:
                raise  # the queue is gone, or the options are wrong: retrying will not help
            except TasklineError as error:
                log.warning("lease from %s failed: %s", options.queue, error)
                _sleep_unless(stop, backoff.next_s())
                continue
            backoff.reset()
            _handle_all(client, messages, handler, options.visibility_s, stop, done)
    return done


def _handle_all(
    client: Client,
    messages: list[LeasedMessage],
    handler: Callable[[LeasedMessage], object],
    visibility_s: float,
    stop: threading.Event,
    done: Consumed,
) -> None:
    held = Held(messages)
    try:
        with _extending(client, held, visibility_s):
            for message in messages:
                if stop.is_set():
                    break
                try:
                    handler(message)
                except Exception:
                    log.exception("handler failed on message %s: nacked", message.id)
                    _settle(client, held, message, done, ok=False, failed=True)
                else:
                    _settle(client, held, message, done, ok=True)
    finally:  # stopping, or the handler raised past Exception: give back the rest
        for message in held.all():
            _settle(client, held, message, done, ok=False)


def _settle(
    client: Client,
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
        client.ack(message) if ok else client.nack(
            message, delay_seconds=retry_delay_s(message, failed)
        )
    except TasklineError as error:
        done.lost += 1
        log.warning("%s of message %s failed: %s", "ack" if ok else "nack", message.id, error)
    else:
        if ok:
            done.acked += 1
        else:
            done.nacked += 1


@contextmanager
def _extending(client: Client, held: Held, visibility_s: float) -> Iterator[None]:
    """A thread that extends every held message by `visibility_s`, every third of it."""
    finished = threading.Event()

    def extend_all() -> None:
        while not finished.wait(visibility_s * EXTEND_EVERY):
            for message in held.all():
                _extend_one(client, held, message, visibility_s)

    thread = threading.Thread(target=extend_all, name="taskline-extend", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()
        thread.join()


def _extend_one(client: Client, held: Held, message: LeasedMessage, visibility_s: float) -> None:
    try:
        client.extend(message, visibility_seconds=visibility_s)
    except Refused as error:  # the delivery is over: stop extending it
        if held.release(message):
            log.warning("message %s is no longer held: %s", message.id, error)
    except TasklineError as error:
        log.warning("extending message %s failed: %s", message.id, error)


def _sleep_unless(stop: threading.Event, seconds: float) -> None:
    """Sleep in short steps rather than `stop.wait()`: a signal handler that sets
    `stop` while this thread holds the event's lock would wait on itself."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
