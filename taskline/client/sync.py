"""`Client`: the Taskline API from blocking code."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx

from taskline.client import calls, consuming
from taskline.client.calls import Call, ServerWait, TaskId
from taskline.client.connection import DEFAULT_TIMEOUT_S, Connection, TaskFields
from taskline.client.consuming import Consumed, Options
from taskline.client.errors import Invalid, Unreachable
from taskline.client.messages import Delivery, batch, one_message, receipt
from taskline.client.waiting import WaitPlan, finished
from tasks.batch_schemas import BatchOut
from tasks.models import TaskStatus
from tasks.schemas import QueueOut, TaskCreate, TaskOut, TaskPage, WorkerOut
from topics.message_schemas import (
    AckIn,
    ExtendIn,
    ExtendOut,
    LeasedMessage,
    LeaseIn,
    MessageIn,
    NackIn,
    PublishOut,
)

T = TypeVar("T")


class Client:
    """with Client() as taskline: task = taskline.create_task("hi"); taskline.wait(task.id)

    `base_url` defaults to TASKLINE_URL, else http://127.0.0.1:8000; `api_key` to
    TASKLINE_API_KEY (sent as `Authorization: Bearer`). Every method raises a
    `TasklineError` subclass when the API refuses or cannot be reached."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.connection = Connection.resolve(base_url, api_key, timeout_s)
        self._http = httpx.Client(**self.connection.client_options(), transport=transport)
        self._server_wait: ServerWait | None = None
        self._server_wait_known = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(self, call: Call[T]) -> T:
        """Send one API call and read its answer (the methods below are made of this)."""
        try:
            response = self._http.send(self.connection.request(self._http, call))
        except httpx.TransportError as error:
            raise Unreachable(self.connection.unreachable(error)) from error
        return call.read(response)

    # Tasks ------------------------------------------------------------------

    def create_task(
        self, message: str, *, idempotency_key: str | None = None, **fields: Unpack[TaskFields]
    ) -> TaskOut:
        """Checked here first (pydantic's ValidationError if a field is wrong), then sent."""
        body = TaskCreate(message=message, **fields)
        return self.call(calls.create_task(body, idempotency_key))

    def create_task_from(
        self, body: TaskCreate | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> TaskOut:
        """Send a prepared body; a plain mapping is judged by the server alone."""
        return self.call(calls.create_task(body, idempotency_key))

    def create_tasks(
        self, items: Iterable[calls.BatchItemIn], *, ids_only: bool = False
    ) -> BatchOut:
        """Up to 1,000 tasks in one request (POST /tasks/batch): one result per item,
        in order, each with its status (201, 200 for a replayed idempotency_key, or a
        refusal: 403, 422, 429, 503) and the task or the error. An item refused does
        not refuse the others; a refused request raises (Invalid, Unavailable, ...).
        Items: TaskBatchItem or TaskCreate models (checked here first) or mappings
        (judged by the server alone). `ids_only`: each created item's `id` and no
        `task` (Prefer: return=minimal), less for both sides to build and read."""
        return self.call(calls.create_tasks(items, ids_only=ids_only))

    def get_task(self, task_id: TaskId) -> TaskOut:
        return self.call(calls.get_task(task_id))

    def cancel(self, task_id: TaskId) -> TaskOut:
        """Pending: canceled. Running: `cancel_requested`, and its worker stops it.
        Finished: Conflict."""
        return self.call(calls.cancel(task_id))

    def retry(self, task_id: TaskId) -> TaskOut:
        """A failed or canceled task, pending again with a fresh attempt budget."""
        return self.call(calls.retry(task_id))

    def list_page(
        self,
        *,
        status: TaskStatus | str | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        return self.call(calls.list_page(status=status, kind=kind, limit=limit, cursor=cursor))

    def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        kind: str | None = None,
        page_size: int = 50,
    ) -> Iterator[TaskOut]:
        """Every matching task, newest first, one keyset page (`next_cursor`) at a time."""
        cursor: str | None = None
        while True:
            page = self.list_page(status=status, kind=kind, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wait(self, task_id: TaskId, timeout_s: float | None = None) -> TaskOut:
        """The task once it has ended (completed, failed, canceled, expired); WaitTimedOut
        after `timeout_s` (None: no limit). Uses the server's `?wait=` when it has it."""
        plan = WaitPlan(timeout_s=timeout_s, server=self.server_wait())
        task = self.get_task(task_id)
        while not finished(task):
            step = plan.next_step(task)
            if step.held_s is None:
                time.sleep(step.sleep_s)
                task = self.get_task(task_id)
                continue
            try:
                after = self.call(calls.get_task(task_id, wait_s=step.held_s))
            except Invalid:
                plan.refused()
                continue
            plan.answered(step, task, after)
            task = after
        self._server_wait = plan.server
        return task

    def server_wait(self) -> ServerWait | None:
        """What the server's `GET /tasks/{id}?wait=` takes (None: it has none); asked once."""
        if not self._server_wait_known:
            self._server_wait = self.call(calls.server_wait())
            self._server_wait_known = True
        return self._server_wait

    # Queues and workers -----------------------------------------------------

    def list_queues(self) -> list[QueueOut]:
        return self.call(calls.list_queues())

    def list_workers(self) -> list[WorkerOut]:
        """The live workers: queues served, slots busy and total, last heartbeat."""
        return self.call(calls.list_workers())

    # Messages ---------------------------------------------------------------

    def publish(
        self, topic: str, data: Any = None, *, attributes: Mapping[str, str] | None = None
    ) -> PublishOut:
        """One message to a topic: a copy in every subscribed queue whose filters match."""
        return self.call(calls.publish(topic, one_message(data, attributes)))

    def publish_batch(
        self, topic: str, messages: Iterable[MessageIn | Mapping[str, Any]]
    ) -> PublishOut:
        """Up to 500 messages in one transaction (`index` in the answer says which)."""
        return self.call(calls.publish(topic, batch(messages)))

    def lease(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        wait_seconds: float = 0,
        visibility_seconds: float | None = None,
        consumer: str = "consumer",
    ) -> list[LeasedMessage]:
        """Up to `max_messages`, waiting up to `wait_seconds` for the first; each held
        until `visibility_seconds` (else the queue's ack deadline)."""
        body = LeaseIn(
            max_messages=max_messages,
            wait_seconds=wait_seconds,
            visibility_seconds=visibility_seconds,
            consumer=consumer,
        )
        return self.call(calls.lease(queue, body))

    def ack(self, message: Delivery, receipt_handle: str | None = None) -> None:
        """Done. Conflict when the handle no longer holds the message."""
        message_id, handle = receipt(message, receipt_handle)
        self.call(calls.ack(message_id, AckIn(receipt_handle=handle)))

    def nack(
        self, message: Delivery, receipt_handle: str | None = None, *, delay_seconds: float = 0
    ) -> None:
        """Give it back: visible again now, or after `delay_seconds`."""
        message_id, handle = receipt(message, receipt_handle)
        body = NackIn(receipt_handle=handle, delay_seconds=delay_seconds)
        self.call(calls.nack(message_id, body))

    def extend(
        self,
        message: Delivery,
        receipt_handle: str | None = None,
        *,
        visibility_seconds: float,
    ) -> ExtendOut:
        """The deadline becomes `visibility_seconds` from now; Conflict once it has passed."""
        message_id, handle = receipt(message, receipt_handle)
        body = ExtendIn(receipt_handle=handle, visibility_seconds=visibility_seconds)
        return self.call(calls.extend(message_id, body))

    def consume(
        self,
        queue: str,
        handler: Callable[[LeasedMessage], object],
        *,
        max_messages: int = 10,
        wait_seconds: float = 20,
        visibility_seconds: float | None = None,
        consumer: str = "consumer",
        stop: threading.Event | None = None,
    ) -> Consumed:
        """Lease from `queue` and run `handler` (a callable) on each message in turn:
        ack when it returns, nack when it raises. While it runs, every held message's
        deadline (`visibility_seconds`, else the queue's) is extended every third of
        it. SIGTERM or SIGINT (in the main thread), or `stop`, ends it: no new lease,
        the message in hand is finished, the rest given back; then it returns."""
        options = Options(
            queue=queue,
            max_messages=max_messages,
            wait_seconds=wait_seconds,
            visibility_s=consuming.visibility_s(self, queue, visibility_seconds),
            consumer=consumer,
        )
        return consuming.consume(self, options, handler, stop or threading.Event())
