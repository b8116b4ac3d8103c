"""How `wait` decides between held GETs (`?wait=`) and polling: the plan, and how
the server's OpenAPI tells whether it holds answers."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.config import Settings
from main import create_app
from taskline.client import ServerWait, TaskOut, WaitTimedOut
from taskline.client.calls import DEFAULT_SERVER_WAIT_S, server_wait
from taskline.client.waiting import POLL_MAX_S, Step, WaitPlan

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def task(status: str = "pending", updated_s: float = 0) -> TaskOut:
    return TaskOut.model_validate({
        "id": "019a8f3c-5a7e-7c11-9d2e-6f1b2a3c4d5e", "message": "m", "kind": "echo",
        "payload": {}, "status": status, "result": None, "error": None, "errors": [],
        "attempts": 0, "max_attempts": 3, "redrives": 0, "timeout_seconds": 300.0,
        "run_at": NOW, "expires_at": None, "lease_expires_at": None, "worker_id": None,
        "cancel_requested": False, "queue": "default", "priority": 5, "fair_level": 0,
        "owner": None, "created_at": NOW, "updated_at": NOW + timedelta(seconds=updated_s),
        "started_at": None, "finished_at": None,
    })  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_server_wait_it_polls_with_growing_pauses_until_the_deadline() -> None:
    clock = Clock()
    plan = WaitPlan(timeout_s=10, server=None, clock=clock)
    pauses = []
    with pytest.raises(WaitTimedOut) as timed_out:
        while True:
            step = plan.next_step(task())
            assert step.held_s is None
            pauses.append(step.sleep_s)
            clock.now += step.sleep_s
    assert pauses[1] > pauses[0] and max(pauses) <= POLL_MAX_S
    assert sum(pauses) == pytest.approx(10)  # the last pause ends at the deadline, not past it
    assert timed_out.value.task.status == "pending"


def test_with_server_wait_it_asks_the_server_to_hold_within_its_maximum() -> None:
    clock = Clock()
    plan = WaitPlan(timeout_s=50, server=ServerWait(max_s=20), clock=clock)
    assert plan.next_step(task()) == Step(held_s=20)
    clock.now += 45
    assert plan.next_step(task()) == Step(held_s=5)
    whole = WaitPlan(timeout_s=None, server=ServerWait(max_s=30, whole_seconds=True), clock=clock)
    assert whole.next_step(task()) == Step(held_s=30)
    short = WaitPlan(timeout_s=0.5, server=ServerWait(max_s=30, whole_seconds=True), clock=clock)
    assert short.next_step(task()).held_s is None  # below one second: poll the rest


def test_an_early_answer_with_nothing_changed_means_the_server_does_not_hold() -> None:
    clock = Clock()
    plan = WaitPlan(timeout_s=None, server=ServerWait(max_s=20), clock=clock)
    step = plan.next_step(task())
    clock.now += 1
    plan.answered(step, task("pending"), task("processing", updated_s=1))  # a change: fine
    assert plan.server is not None
    step = plan.next_step(task())
    clock.now += 15
    plan.answered(step, task("processing"), task("processing"))  # held most of its time
    assert plan.server is not None
    step = plan.next_step(task())
    clock.now += 0.01
    plan.answered(step, task("processing"), task("processing"))  # ignored the parameter
    assert plan.server is None and plan.next_step(task()).held_s is None


def read_server_wait(document: dict[str, Any]) -> ServerWait | None:
    response = httpx.Response(200, content=json.dumps(document).encode())
    return server_wait().read(response)


def with_wait_parameter(document: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    operation = changed["paths"]["/tasks/{task_id}"]["get"]
    kept = [one for one in operation.get("parameters", []) if one.get("name") != "wait"]
    if schema is not None:
        kept.append({"name": "wait", "in": "query", "required": False, "schema": schema})
    operation["parameters"] = kept
    return changed


def test_the_openapi_tells_whether_get_task_takes_wait(settings: Settings) -> None:
    document = create_app(settings).openapi()
    assert read_server_wait(with_wait_parameter(document, None)) is None
    optional = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 30}, {"type": "null"}]}
    assert read_server_wait(with_wait_parameter(document, optional)) == ServerWait(30.0)
    whole = {"type": "integer", "exclusiveMaximum": 61}
    assert read_server_wait(with_wait_parameter(document, whole)) == ServerWait(60.0, True)
    plain = {"type": "number"}
    assert read_server_wait(with_wait_parameter(document, plain)) == ServerWait(
        DEFAULT_SERVER_WAIT_S
    )
    assert server_wait().read(httpx.Response(404, json={"detail": "Not Found"})) is None
