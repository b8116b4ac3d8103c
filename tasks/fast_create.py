"""POST /tasks without FastAPI's request machinery: the API's hot path.

Every task starts here, and under load FastAPI's handling of the request (its
router, its exception and exit-stack middleware, solving the route's
dependencies one by one, validating the answer again) costs the API process
more CPU than creating the task does. `FastCreate` is a middleware that takes
the plain case itself: `POST /tasks` with a JSON body, no query string (`wait`
goes the usual way), a valid body and Idempotency-Key. It calls what the route
calls (`require`, `get_writer`, `service.create_task`), answers what the route
answers (TaskOut, 201 or 200, Location), and hands any error to the app's own
exception handlers, so the answer is the same (tests/test_fast_create.py
compares the two).

Anything else (another route, a body that is not JSON or does not validate, a
bad header) goes on to FastAPI untouched, its body replayed: the 4xx answers
are FastAPI's, and OpenAPI describes the route FastAPI still has.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.security import SecurityScopes
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth.caller import Scope as AuthScope
from auth.dependencies import require
from tasks import service
from tasks.dependencies import get_writer
from tasks.schemas import IDEMPOTENCY_KEY_PATTERN, TaskCreate, task_values

PATH = "/tasks"
WRITE_SCOPES = SecurityScopes([AuthScope.TASKS_WRITE])
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_JSON_MEDIA = b"application/json"


class FastCreate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _taken(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        parsed = _parse(scope, body)
        if parsed is None:  # FastAPI answers it (a 422 in the one error shape)
            await self.app(scope, _replay(body, receive), send)
            return
        request = Request(scope, receive)
        try:
            response = await _create(request, *parsed)
        except Exception as error:
            handler = _handler_for(scope, error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)


def _taken(scope: Scope) -> bool:
    """POST /tasks, no query string, a JSON body declared."""
    if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
        return False
    if scope["query_string"]:
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == _JSON_MEDIA
    return False


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # what follows the body: a disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _parse(scope: Scope, body: bytes) -> tuple[TaskCreate, str | None] | None:
    """The body and Idempotency-Key as the route would take them; None when
    either is invalid (FastAPI then says why)."""
    keys = [value for name, value in scope["headers"] if name == b"idempotency-key"]
    if len(keys) > 1:
        return None
    key = keys[0].decode("latin-1") if keys else None
    if key is not None and _IDEMPOTENCY_KEY.search(key) is None:
        return None
    try:
        return TaskCreate.model_validate_json(body), key
    except ValidationError:  # invalid JSON too (FastAPI then answers it as it would)
        return None


async def _create(request: Request, body: TaskCreate, idempotency_key: str | None) -> Response:
    writer = await get_writer(request, await require(WRITE_SCOPES, request))
    row, created = await service.create_task(
        intake=writer.intake, resources=writer.resources, registry=writer.registry, body=body,
        caller=writer.caller, idempotency_key=idempotency_key, client=writer.client,
    )  # fmt: skip
    return Response(
        to_json(task_values(row)),
        status_code=201 if created else 200,
        headers={"Location": f"{PATH}/{row['id']}"},
        media_type="application/json",
    )


Handler = Callable[[Request, Exception], Any]


def _handler_for(scope: Scope, error: Exception) -> Handler | None:
    """The app's handler for this error, looked up as Starlette does (by class,
    nearest first); None for errors it leaves to the server (a 500)."""
    handlers: dict[Any, Handler] = scope["app"].exception_handlers
    for kind in type(error).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]
    return None
