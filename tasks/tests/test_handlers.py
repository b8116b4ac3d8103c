"""The handler registry: how a task's kind finds the function that runs it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from tasks.handlers import Registry, TaskContext, handler, load_handlers, registry


@pytest.fixture
def kind() -> Iterator[str]:
    """A kind name of this test's own, removed from the shared registry afterwards."""
    name = f"test_kind_{uuid.uuid4().hex[:8]}"
    yield name
    registry._handlers.pop(name, None)


def context(**payload: Any) -> TaskContext:
    return TaskContext(id=uuid.uuid4(), kind="echo", message="hello", payload=payload, attempt=1)


async def test_builtin_echo_and_sleep_are_registered() -> None:
    assert {"echo", "sleep"} <= set(registry.kinds())
    echo = registry.get("echo")
    assert echo is not None and echo.is_async
    assert await echo.func(context()) == {"message": "hello"}
    sleep = registry.get("sleep")
    assert sleep is not None and sleep.payload_model is not None
    assert await sleep.func(context(seconds=0)) == {"slept": 0}


def test_unknown_kind_is_not_found() -> None:
    assert registry.get("no_such_kind") is None
    assert "no_such_kind" not in registry.kinds()


def test_decorator_registers_a_new_kind(kind: str) -> None:
    assert registry.get(kind) is None

    @handler(kind)
    def plain(task: TaskContext) -> str:
        return task.message

    found = registry.get(kind)
    assert found is not None
    assert (found.kind, found.func, found.is_async) == (kind, plain, False)
    assert kind in registry.kinds() and registry.kinds() == sorted(registry.kinds())
    assert plain(context()) == "hello"  # the decorator returns the function itself
    assert found.check_payload({"anything": 1}) is None  # no payload model: any payload


async def test_decorator_registers_an_async_handler_with_a_payload_model(kind: str) -> None:
    class Resize(BaseModel):
        model_config = ConfigDict(extra="forbid")
        width: int

    @handler(kind, payload=Resize)
    async def resize(task: TaskContext) -> dict[str, int]:
        return {"width": Resize.model_validate(task.payload).width}

    found = registry.get(kind)
    assert found is not None and found.is_async and found.payload_model is Resize
    assert await found.func(context(width=3)) == {"width": 3}
    assert found.check_payload({"width": 3}) is None
    assert found.check_payload({"width": "wide"}) == (
        "payload.width: Input should be a valid integer, unable to parse string as an integer"
    )


def test_a_second_function_for_an_existing_kind_is_refused(kind: str) -> None:
    @handler(kind)
    async def first(task: TaskContext) -> None:
        return None

    async def second(task: TaskContext) -> None:
        return None

    with pytest.raises(ValueError, match=kind):
        handler(kind)(second)
    with pytest.raises(ValueError, match="already registered"):
        handler("echo")(second)
    found = registry.get(kind)
    assert found is not None and found.func is first
    handler(kind)(first)  # the same function again (a module imported twice) is fine
    assert registry.get(kind) is not None


def test_a_fresh_registry_is_independent() -> None:
    fresh = Registry()

    async def one(task: TaskContext) -> int:
        return 1

    async def two(task: TaskContext) -> int:
        return 2

    assert fresh.kinds() == []
    fresh.add("echo", one)  # the shared registry's echo does not clash here
    mine, shared = fresh.get("echo"), registry.get("echo")
    assert mine is not None and mine.func is one
    with pytest.raises(ValueError):
        fresh.add("echo", two)
    assert fresh.get("echo") is mine
    assert shared is not None and shared.func is not one


def test_load_handlers_imports_the_named_modules() -> None:
    loaded = load_handlers(("tasks.tests.handlers",))
    assert loaded is registry
    assert {"record", "boom", "echo", "sleep"} <= set(loaded.kinds())
    assert load_handlers(()) is registry


def test_load_handlers_fails_on_a_missing_module() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_handlers(("tasks.no_such_handlers_module",))


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({"seconds": -1}, "seconds", "greater than or equal to 0"),
        ({"seconds": 3600.5}, "seconds", "less than or equal to 3600"),
        ({"seconds": 1, "extra": True}, "extra", "Extra inputs are not permitted"),
        ({}, "seconds", "Field required"),
        ({"seconds": "long"}, "seconds", "valid number"),
    ],
)
def test_sleep_payload_problems_are_explained(
    payload: dict[str, Any], field: str, reason: str
) -> None:
    sleep = registry.get("sleep")
    assert sleep is not None
    problem = sleep.check_payload(payload)
    assert problem is not None
    assert problem.startswith(f"payload.{field}: ")
    assert reason in problem


@pytest.mark.parametrize("seconds", [0, 0.5, 3600])
def test_valid_sleep_payloads_pass(seconds: Any) -> None:
    sleep = registry.get("sleep")
    assert sleep is not None
    assert sleep.check_payload({"seconds": seconds}) is None
