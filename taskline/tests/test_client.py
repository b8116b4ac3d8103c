"""taskline.client, sync and async, against a real `taskline api` process (and a
real worker where tasks must run); admission refusals against the API in process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from main import create_app
from taskline.client import (
    AsyncClient,
    BatchOut,
    Client,
    ConfigError,
    Conflict,
    Invalid,
    NotFound,
    RateLimited,
    TaskBatchItem,
    TaskCreate,
    TaskOut,
    Unavailable,
    Unreachable,
    WaitTimedOut,
)
from tasks.tests.fixtures import free_port


def test_sync_client_creates_waits_lists_and_maps_refusals(api: str, worker: None) -> None:
    with Client(api) as taskline:
        created = taskline.create_task("hi", kind="echo", priority=3)
        assert isinstance(created, TaskOut) and created.priority == 3
        done = taskline.wait(created.id, timeout_s=30)
        assert (done.status, done.result) == ("completed", {"message": "hi"})
        assert taskline.get_task(str(created.id)).status == "completed"

        with pytest.raises(Conflict) as conflict:
            taskline.cancel(created.id)  # finished already
        assert conflict.value.status == 409 and "detail" in conflict.value.body
        with pytest.raises(NotFound) as missing:
            taskline.get_task(uuid.uuid4())
        assert missing.value.status == 404 and "detail" in missing.value.body
        with pytest.raises(Invalid) as unknown:
            taskline.create_task("x", kind="no_such_kind")
        assert unknown.value.status == 422 and "detail" in unknown.value.body
        with pytest.raises(ValidationError):  # checked by the API's own model before sending
            taskline.create_task("x", priority=42)

        failed = taskline.wait(taskline.create_task("b", kind="boom", max_attempts=1).id, 30)
        assert failed.status == "failed" and "boom" in (failed.error or "")
        again = taskline.retry(failed.id)
        assert (again.status, again.redrives) == ("pending", 1)
        assert taskline.wait(failed.id, timeout_s=30).status == "failed"
        [worker] = taskline.list_workers()  # the worker fixture's, reporting since it started
        assert worker.queues == ["default"] and worker.slots_total == 10


def test_list_tasks_follows_the_keyset_pages(api: str) -> None:
    with Client(api) as taskline:
        made = [taskline.create_task(f"t{n}", delay_seconds=3600).id for n in range(7)]
        assert taskline.list_page(limit=3).next_cursor is not None
        listed = [task.id for task in taskline.list_tasks(page_size=3)]  # 3 + 3 + 1
        assert listed == made[::-1]  # newest first, each once
        pending = list(taskline.list_tasks(status="pending", kind="echo", page_size=2))
        assert len(pending) == 7
        assert "default" in {queue.name for queue in taskline.list_queues()}
        assert taskline.list_workers() == []


async def test_async_client_does_the_same(api: str, worker: None) -> None:
    async with AsyncClient(api) as taskline:
        created = await taskline.create_task("async hi")
        done = await taskline.wait(created.id, timeout_s=30)
        assert (done.status, done.result) == ("completed", {"message": "async hi"})

        later = [(await taskline.create_task(f"l{n}", delay_seconds=3600)).id for n in range(5)]
        listed = [task.id async for task in taskline.list_tasks(status="pending", page_size=2)]
        assert listed == later[::-1]
        canceled = await taskline.cancel(later[0])
        assert canceled.status == "canceled"
        assert (await taskline.wait(later[0], timeout_s=5)).status == "canceled"

        with pytest.raises(Conflict):
            await taskline.cancel(created.id)
        with pytest.raises(NotFound):
            await taskline.retry(uuid.uuid4())
        with pytest.raises(Invalid):  # not a UUID: the server says so, nothing is guessed here
            await taskline.get_task("not-a-uuid")
        assert "default" in {queue.name for queue in await taskline.list_queues()}
        [worker] = await taskline.list_workers()
        assert worker.queues == ["default"] and worker.heartbeat_age_s >= 0


def test_create_tasks_sends_one_batch_and_reads_each_result(api: str, worker: None) -> None:
    items = [
        TaskBatchItem(message="one", idempotency_key="batch-1"),
        TaskCreate(message="two", priority=1),
        {"message": "three", "kind": "no_such_kind"},
        {"message": ""},
    ]
    with Client(api) as taskline:
        made = taskline.create_tasks(items)
        again = taskline.create_tasks(items[:1])
        assert [result.status for result in made.results] == [201, 201, 422, 422]
        assert (made.created, made.replayed, made.refused) == (2, 0, 2)
        first, second = (result.task for result in made.results[:2])
        assert first is not None and second is not None and second.priority == 1
        refusal = made.results[2].error
        assert refusal is not None and "unknown kind" in refusal.detail
        assert again.results[0].status == 200 and again.results[0].task == first
        assert taskline.wait(second.id, timeout_s=30).status == "completed"
        with pytest.raises(Invalid):  # the envelope: nothing written
            taskline.create_tasks([])


async def test_async_create_tasks(api: str) -> None:
    async with AsyncClient(api) as taskline:
        made = await taskline.create_tasks({"message": f"m{n}"} for n in range(1000))
        assert isinstance(made, BatchOut) and made.created == 1000
        assert [result.index for result in made.results] == list(range(1000))
        with pytest.raises(Invalid):
            await taskline.create_tasks([{"message": "x"}] * 1001)


async def test_create_tasks_ids_only_answers_ids_of_the_stored_tasks(api: str) -> None:
    async with AsyncClient(api) as taskline:
        made = await taskline.create_tasks(
            [{"message": "one"}, {"message": ""}, {"message": "two"}], ids_only=True
        )
        assert [result.status for result in made.results] == [201, 422, 201]
        assert all(result.task is None for result in made.results)
        assert made.results[1].id is None and made.results[1].error is not None
        for result, message in ((made.results[0], "one"), (made.results[2], "two")):
            assert result.id is not None
            assert (await taskline.get_task(result.id)).message == message


async def test_wait_gives_up_at_its_timeout_with_the_last_state(api: str) -> None:
    async with AsyncClient(api) as taskline:
        task = await taskline.create_task("not yet", delay_seconds=3600)
        with pytest.raises(WaitTimedOut) as timed_out:
            await taskline.wait(task.id, timeout_s=0.3)
    assert timed_out.value.task.id == task.id and timed_out.value.task.status == "pending"
    with Client(api) as taskline, pytest.raises(WaitTimedOut):
        taskline.wait(task.id, timeout_s=0.3)


async def test_an_unreachable_server_is_told_apart_from_a_refusal() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url) as taskline, pytest.raises(Unreachable) as sync_error:
        taskline.get_task(uuid.uuid4())
    assert sync_error.value.status is None and url in str(sync_error.value)
    async with AsyncClient(url) as taskline:
        with pytest.raises(Unreachable):
            await taskline.list_queues()


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLINE_URL", "http://taskline.internal:9000/")
    monkeypatch.setenv("TASKLINE_API_KEY", "k-123")
    with Client() as taskline:
        assert taskline.connection.base_url == "http://taskline.internal:9000"
        headers = taskline.connection.client_options()["headers"]
        assert headers["Authorization"] == "Bearer k-123"
    monkeypatch.setenv("TASKLINE_URL", "taskline.internal:9000")
    with pytest.raises(ConfigError, match="TASKLINE_URL"):
        Client()
    monkeypatch.delenv("TASKLINE_URL")
    monkeypatch.delenv("TASKLINE_API_KEY")
    with Client() as taskline:
        assert taskline.connection.base_url == "http://127.0.0.1:8000"
        assert "Authorization" not in taskline.connection.client_options()["headers"]


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://test", transport=transport) as taskline:
            yield taskline


async def test_admission_refusals_carry_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit": "1/m burst 1"})
    async with in_process(limited) as taskline:
        await taskline.create_task("first")
        with pytest.raises(RateLimited) as refused:
            await taskline.create_task("second")
    assert refused.value.status == 429 and refused.value.retry_after_s is not None
    assert refused.value.retry_after_s >= 1

    shedding = settings.model_copy(update={"queue_max_pending": 1})
    async with in_process(shedding) as taskline:
        await taskline.create_task("first", queue="shed")
        with pytest.raises(Unavailable) as full:
            await taskline.create_task("second", queue="shed")
    assert full.value.status == 503 and full.value.retry_after_s is not None
