"""The worker: a puller that starts what it claims, and supervised side loops,
around a slot pool.

Shutdown runs in two phases: stop pulling and give back what has not started;
then give running handlers a bounded grace, cancel what is left, give it back,
write the last outcomes and close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.errors import is_store_error
from app.lifespan import close_resources, open_resources
from app.logs import bind_task, bind_worker
from app.loops import cancel_and_wait, stop_if_canceled
from tasks import events, presence, repository, tally
from tasks.doorbell import Doorbell, Popped
from tasks.handlers import Registry
from tasks.models import TaskStatus
from tasks.repository import ClaimedTask, Outcome
from tasks.worker import maintenance
from tasks.worker.backoff import Backoff
from tasks.worker.claiming import claim_popped
from tasks.worker.execution import Policy, execute
from tasks.worker.hooks import Extensions
from tasks.worker.recorder import Recorder
from tasks.worker.slots import Slots

log = logging.getLogger("taskline.worker")

POP_TIMEOUT_S = 1.0


class WorkerCrashed(RuntimeError):
    """A side loop died; the worker stopped rather than carry on half-blind."""


class Worker:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        worker_id: str | None = None,
        extensions: Extensions | None = None,
    ):
        self.settings = settings
        self.registry = registry
        self.extensions = extensions or Extensions()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.slots = Slots(settings.worker_queue_maxsize)
        self.not_started: list[ClaimedTask] = []  # claimed as the puller was stopped
        self.running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._cancel_asked: set[uuid.UUID] = set()
        self._lease_lost: set[uuid.UUID] = set()
        self.policy = Policy(
            default_timeout_s=settings.default_timeout_s,
            backoff_base_s=settings.retry_backoff_base_s,
            backoff_cap_s=settings.retry_backoff_cap_s,
            result_max_bytes=settings.result_max_bytes,
        )
        self._started_at_s = time.time()
        self.stop_requested = asyncio.Event()
        self.exit_now = asyncio.Event()
        self._loops: dict[str, asyncio.Task[None]] = {}
        self.services: dict[str, Any] = {}

    # Lifecycle -------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: graceful shutdown. Second call: exit at once."""
        if self.stop_requested.is_set():
            self.exit_now.set()
        self.stop_requested.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        self.resources = open_resources(self.settings)
        self.db: AsyncEngine = self.resources.engine
        self._claims = repository.HeldConnection(self.db)  # the puller's, one claim at a time
        self.doorbell = Doorbell(self.resources)
        self.executor = ThreadPoolExecutor(self.slots.capacity, thread_name_prefix="handler")
        self.publisher = events.Publisher(self.resources)
        self.recorder = Recorder(
            self.resources,
            self.worker_id,
            max_pending=self.slots.capacity * 50,
            flow_hook=self.extensions.flow_hook,
            publisher=self.publisher,
        )
        bind_worker(self.worker_id)  # every line of this worker's loops and tasks
        signals = self._install_signal_handlers() if handle_signals else []
        log.info("worker %s started: %d slots", self.worker_id, self.slots.capacity)
        try:
            # Services outlive the handlers: closed once the shutdown is over.
            async with AsyncExitStack() as services:
                for name, open_service in self.extensions.services.items():
                    opened = open_service(self.resources)
                    self.services[name] = await services.enter_async_context(opened)
                await self._serve()
        finally:
            for signum in signals:
                asyncio.get_running_loop().remove_signal_handler(signum)

    async def _serve(self) -> None:
        lease_s = self.settings.worker_lease_s
        self._start("puller", self._pull())
        self._start("recorder", self.recorder.run())
        self._start("events", self.publisher.run())
        self._start(
            "heartbeat",
            maintenance.heartbeat(
                self.db,
                worker_id=self.worker_id,
                lease_s=lease_s,
                held=self._held_ids,
                cancel_requested=self.cancel_running,
                leases_lost=self._drop_running,
                report=self._report,
            ),
        )
        self._start("reconcile", maintenance.reconcile(self.db, self.resources))
        self._start("promoter", maintenance.promote_scheduled(self.resources))
        self._start("cancels", maintenance.listen_for_cancels(self.resources, self.cancel_running))
        for name, side_loop in self.extensions.side_loops.items():
            self._start(name, side_loop(self.resources))
        stop_wait = asyncio.create_task(self.stop_requested.wait(), name="stop-wait")
        done, _ = await asyncio.wait(
            [stop_wait, *self._loops.values()], return_when=asyncio.FIRST_COMPLETED
        )
        died = [task for task in done if task is not stop_wait]
        for task in died:
            log.error(
                "%s loop died; stopping the worker", task.get_name(), exc_info=_error_of(task)
            )
        stop_wait.cancel()
        exit_watch = asyncio.create_task(self._exit_on_second_signal(), name="exit-watch")
        try:
            await self._shutdown()
        finally:
            exit_watch.cancel()
        if died:
            raise WorkerCrashed(", ".join(task.get_name() for task in died))

    async def _report(self) -> None:
        """Say this worker is alive, and how busy (tasks/presence.py)."""
        await presence.report(self.resources, self._presence(), ttl_s=self.settings.worker_lease_s)

    def _presence(self) -> presence.WorkerReport:
        return presence.WorkerReport(
            id=self.worker_id, host=socket.gethostname(), pid=os.getpid(),
            queues=list(self.settings.queues), slots_busy=len(self.running),
            slots_total=self.slots.capacity, started_at_s=self._started_at_s,
        )  # fmt: skip

    def _start(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._loops[name] = asyncio.create_task(coro, name=name)

    def _install_signal_handlers(self) -> list[int]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.request_stop)
        return [signal.SIGINT, signal.SIGTERM]

    async def _exit_on_second_signal(self) -> None:
        await self.exit_now.wait()
        log.warning("second signal: exiting now; running tasks come back when their leases expire")
        os._exit(1)

    # Pulling and scheduling -------------------------------------------------

    async def _pull(self) -> None:
        backoff = Backoff()
        while True:
            stop_if_canceled()
            count = await self.slots.take_free()
            try:
                claimed = await self._pull_batch(count)
            except Exception as error:
                self.slots.give_back(count)
                if not is_store_error(error):
                    raise
                delay_s = backoff.next_delay_s()
                log.warning("cannot pull work (%s); retrying in %.2fs", error, delay_s)
                await asyncio.sleep(delay_s)
                continue
            backoff.reset()
            self.slots.give_back(count - len(claimed))
            if claimed:
                # The handlers just launched start before the next pop is
                # packed and sent: about 0.1 ms sooner each.
                await asyncio.sleep(0)

    async def _pull_batch(self, count: int) -> list[ClaimedTask]:
        popped = await self.doorbell.pop(self.settings.queues, count=count, timeout_s=POP_TIMEOUT_S)
        if not popped:
            return []
        claiming = asyncio.ensure_future(self._claim(popped))
        try:
            claimed = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # Stopping mid-claim: finish the claim so the shutdown can give the tasks back.
            self.not_started += await claiming
            raise
        now_s, observe = time.time(), self.publisher.observe
        for task in claimed:  # each has its slot (taken before the pop): it starts now
            if self._runs_here(task.id):
                self.slots.give_back()
                continue
            self._launch(task)
            observe(tally.START_DELAY, task.bell.queue, now_s - task.bell.ready_at_s)
        self.publisher.publish(events.of_claimed(claimed))
        return claimed

    async def _claim(self, popped: list[Popped]) -> list[ClaimedTask]:
        return await claim_popped(
            popped,
            held=self._claims,
            db=self.db,
            doorbell=self.doorbell,
            publisher=self.publisher,
            settings=self.settings,
            worker_id=self.worker_id,
        )

    def _runs_here(self, task_id: uuid.UUID) -> bool:
        """Claimed while its handler still runs here: PostgreSQL forgot the first
        claim (a crash, CLAIM_SYNCHRONOUS_COMMIT=off), and this claim is the same
        attempt of the same worker, so the run going on is its run; no second one."""
        if task_id not in self.running or task_id in self._lease_lost:
            return False
        log.warning("task %s claimed again while it runs here: its first claim was lost;"
                    " the run goes on as this claim's", task_id)  # fmt: skip
        return True

    def _launch(self, task: ClaimedTask) -> None:
        runner = asyncio.create_task(self._run_task(task), name=f"task-{task.id}")
        self.running[task.id] = runner
        runner.add_done_callback(partial(self._task_done, task))

    async def _run_task(self, task: ClaimedTask) -> None:
        bind_task(task)  # this runner's log lines, and its handler's, carry the task
        started_s = time.monotonic()
        try:
            outcome = await execute(task, self.registry, self.executor, self.policy, self.services)
            self.publisher.observe(tally.DURATION, task.kind, time.monotonic() - started_s)
        except asyncio.CancelledError:
            if task.id in self._lease_lost:
                log.warning("lease lost: handler stopped, another worker may own the task now")
                return  # nothing to record here
            if task.id not in self._cancel_asked:
                raise  # shutdown: the task is given back
            log.info("handler canceled: a cancel was requested")
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            outcome = Outcome(
                task.id, task.attempt, TaskStatus.CANCELED, error="canceled while running",
                kind=task.kind, queue=task.bell.queue,
            )  # fmt: skip
        if task.workflow_id is not None:
            outcome = replace(outcome, in_flow=True)
        # The handler is over: a cancel arriving now must not lose its outcome.
        # Mostly there is room, and no await: no shield (a Task each) needed.
        if not self.recorder.try_put(outcome):
            await asyncio.shield(self.recorder.put(outcome))

    def cancel_running(self, ids: list[uuid.UUID]) -> None:
        """Cancel these tasks' handlers if they run here (a cancel was asked for)."""
        for task_id in ids:
            runner = self.running.get(task_id)
            if runner is not None and task_id not in self._cancel_asked:
                self._cancel_asked.add(task_id)
                runner.cancel()

    def _held_ids(self) -> list[uuid.UUID]:
        """Tasks claimed here and not yet recorded: running, or outcome not yet written."""
        return [*self.running, *self.recorder.pending_ids()]

    def _drop_running(self, ids: list[uuid.UUID]) -> None:
        """These leases were lost: stop the handlers, so no task runs twice at once."""
        for task_id in ids:
            runner = self.running.get(task_id)
            if runner is not None and task_id not in self._lease_lost:
                self._lease_lost.add(task_id)
                runner.cancel()

    def _task_done(self, task: ClaimedTask, runner: asyncio.Task[None]) -> None:
        if self.running.get(task.id) is runner:  # not a run stopped and since replaced
            del self.running[task.id]
            self._cancel_asked.discard(task.id)
        self._lease_lost.discard(task.id)
        self.slots.give_back()
        if not runner.cancelled() and runner.exception() is not None:
            log.error("runner failed", exc_info=runner.exception(), extra=task.log_fields())

    # Shutdown ---------------------------------------------------------------

    async def _shutdown(self) -> None:
        log.info("worker %s stopping: no new work; %d running", self.worker_id, len(self.running))
        await _cancel(self._loops.pop("puller"))
        await self._claims.close()
        await self._give_back([task.id for task in self.not_started])

        grace_s = self.settings.worker_shutdown_timeout_s
        interrupted: list[uuid.UUID] = []
        if self.running:
            log.info("waiting up to %.0fs for %d running task(s); a second signal stops now",
                     grace_s, len(self.running))  # fmt: skip
            _, late = await asyncio.wait(list(self.running.values()), timeout=grace_s)
            interrupted = [task_id for task_id, runner in self.running.items() if runner in late]
            if late:
                log.warning("%d task(s) still running after %.1fs: canceling", len(late), grace_s)
                await _cancel(*late)
        await self._give_back(interrupted)

        if not await self.recorder.drain(timeout_s=max(grace_s, 5.0)):
            log.warning("some outcomes were not recorded; those tasks return when leases expire")
        if not await self.publisher.drain(timeout_s=5.0):
            log.warning(
                "some events were not published; waiters read their rows at their deadlines"
            )
        await _cancel(*self._loops.values())
        await self.recorder.close()
        with suppress(Exception):  # else its report expires by itself
            await presence.withdraw(self.resources, self.worker_id)
        self.executor.shutdown(wait=False, cancel_futures=True)
        await self.doorbell.settle(timeout_s=POP_TIMEOUT_S + 1)
        await close_resources(self.resources)
        log.info("worker %s stopped", self.worker_id)

    async def _give_back(self, ids: list[uuid.UUID]) -> None:
        """Claimed but not finished here: back to pending, and rung to be popped next."""
        if not ids:
            return
        try:
            async with repository.driver_connection(self.db) as conn:
                released = await repository.release(conn=conn, ids=ids, worker_id=self.worker_id)
            await self.doorbell.send(
                ready=[r.bell for r in released if r.status == TaskStatus.PENDING],
                also=[
                    events.stage(
                        self.resources, events.of_recorded(released, pending=events.RELEASED)
                    )
                ],
            )
            await self.doorbell.slots_freed(r.bell.kind for r in released)
            log.info("gave back %d task(s)", len(released))
        except Exception as error:
            log.warning("could not give back %d task(s) (%s); leases will expire", len(ids), error)


async def _cancel(*tasks: asyncio.Task[None], timeout_s: float = 5.0) -> None:
    """Cancel and wait, but not forever. A cancel a client library loses is
    caught by the loops themselves (app/loops.py); should one still get stuck,
    the shutdown goes on without it and the log says where it waited."""
    stuck = await cancel_and_wait(tasks, timeout_s=timeout_s)
    for task in stuck:
        frames = task.get_stack(limit=1)
        where = f" (at {frames[0].f_code.co_filename}:{frames[0].f_lineno})" if frames else ""
        log.warning("%s did not stop within %.0fs of being canceled%s",
                    task.get_name(), timeout_s, where)  # fmt: skip


def _error_of(task: asyncio.Task[Any]) -> BaseException | None:
    return None if task.cancelled() else task.exception()
