"""The `http` task kind: a worker makes one HTTP request and stores the answer.

    {"kind": "http", "payload": {"method": "POST", "url": "https://api.example.com/x",
     "headers": [["content-type", "application/json"]], "body": "{}"}}

The result is the answer: `{"status", "headers": [[name, value], ...] (end-to-end
only), "body_base64"}`, so binary bodies survive. Retries follow
GATEWAY_RETRY_ON with the task's attempts and backoff: `5xx` (an answer of 500
or more is retried; on the last attempt it is the result), `connect` (never
sent), `timeout` (sent, no answer in time: retry only idempotent targets). A
4xx is the result at once. Anything not retried fails the task now (NoRetry).

Each worker process has ONE client pool for this kind, opened with the worker's
resources and closed after its last handler (`open_http`, a worker service).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import ValidationError

from app.config import Settings, split_list
from app.lifespan import Resources
from gateway import client
from gateway.headers import REQUEST_RECOMPUTED, end_to_end, to_json
from gateway.headers import size as headers_size
from gateway.payload import HttpPayload, destination
from tasks.handlers import NoRetry, Registry, TaskContext

KIND = "http"
SERVICE = "http"  # its name in TaskContext.services


class UpstreamError(Exception):
    """An attempt that GATEWAY_RETRY_ON says to retry."""


class HttpCaller:
    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self.client = http
        self.settings = settings
        self.retry_on = frozenset(split_list(settings.gateway_retry_on))

    async def call(self, task: TaskContext) -> dict[str, Any]:
        settings = self.settings
        try:
            payload = HttpPayload.model_validate(task.payload, context={"settings": settings})
            url = destination(payload, settings)
        except (ValidationError, ValueError) as error:
            raise NoRetry(f"not sent: {_first_error(error)}") from None
        sent = client.request(
            payload.method,
            url,
            end_to_end(payload.raw_headers(), drop=REQUEST_RECOMPUTED),
            payload.content(),
            client.timeout_of(settings, payload.timeout_seconds),
        )
        try:
            answer = await client.exchange(
                self.client, sent, max_body_bytes=settings.gateway_max_body_bytes
            )
        except client.ExchangeFailed as failure:
            if failure.reason in self.retry_on:
                raise UpstreamError(str(failure)) from None
            raise NoRetry(str(failure)) from None
        if answer.status >= 500 and "5xx" in self.retry_on and not task.last_attempt:
            raise UpstreamError(f"{payload.method} {url} answered {answer.status}")
        return self._result(answer)

    def _result(self, answer: client.Exchanged) -> dict[str, Any]:
        body = base64.b64encode(answer.body).decode("ascii")
        result = {"status": answer.status, "headers": to_json(answer.headers), "body_base64": body}
        # JSON escapes a header character in 6 bytes at most: measure exactly only near the cap.
        bound = len(body) + 6 * headers_size(answer.headers) + 100
        size = bound if bound <= self.settings.result_max_bytes else len(json.dumps(result))
        if size > self.settings.result_max_bytes:  # else the attempt would fail, and retry
            raise NoRetry(
                f"the answer ({len(answer.body)} bytes of body) is {size} bytes as a result,"
                f" over RESULT_MAX_BYTES ({self.settings.result_max_bytes})"
            )
        return result


def _first_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"payload{'.' + where if where else ''}: {first['msg']}"
    return str(error)


@asynccontextmanager
async def open_http(resources: Resources) -> AsyncIterator[HttpCaller]:
    """The worker service of the `http` kind: one client pool per worker process."""
    pool = client.new_client(resources.settings)
    try:
        yield HttpCaller(pool, resources.settings)
    finally:
        await pool.aclose()


async def call_http(task: TaskContext) -> dict[str, Any]:
    caller = task.services.get(SERVICE)
    if not isinstance(caller, HttpCaller):
        raise NoRetry(
            "this worker has no HTTP client for the http kind: run `python worker.py`"
            " (or `taskline worker`), which opens one"
        )
    return await caller.call(task)


def register(registry: Registry) -> None:
    """Add the `http` kind (the same function every time, so again is a no-op)."""
    registry.add(KIND, call_http, HttpPayload)
