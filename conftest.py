"""One set of fixtures for every package's tests (tasks/tests/fixtures.py): the
embedded servers start once per run, whichever feature's tests ask first.
Beside them, workers built as `python worker.py` builds them, for the tests of
the features that add to a worker (schedules/, workflows/)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from app.config import Settings
from tasks.handlers import load_handlers
from tasks.worker import Worker
from worker import extensions

pytest_plugins = ["tasks.tests.fixtures"]

# Not imported from tasks.tests.fixtures: a plugin imported before pytest loads
# it cannot have its asserts rewritten.
WorkerFactory = Callable[..., Awaitable[Worker]]

# Handlers of the feature tests, registered for the API and in-process workers.
FEATURE_HANDLERS = ("tasks.tests.handlers", "workflows.tests.handlers")


def run_full_worker(settings: Settings, **overrides: Any) -> tuple[Worker, asyncio.Task[None]]:
    """An in-process worker as `python worker.py` builds it: with the schedule tick
    loop and the workflow hook and sweep. Stop it with request_stop(), then await."""
    worker_settings = settings.model_copy(update=overrides)
    registry = load_handlers(FEATURE_HANDLERS)
    worker = Worker(worker_settings, registry, extensions=extensions(registry))
    return worker, asyncio.create_task(worker.run(), name="test-worker")


@pytest.fixture
async def start_full_worker(settings: Settings) -> AsyncIterator[WorkerFactory]:
    """Start workers of run_full_worker; every one is stopped at the end of the test."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> Worker:
        started.append(run_full_worker(settings, **overrides))
        return started[-1][0]

    yield start
    for worker, _ in started:
        if not worker.stop_requested.is_set():  # a second request exits the process at once
            worker.request_stop()
    for _, task in started:
        await asyncio.wait_for(task, 30)
