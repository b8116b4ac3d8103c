"""The gateway's rules: a request is passed straight through, or queued as an
`http` task (the tasks' intake: rate limit, shedding, fairness, kind rules),
run by a worker against the target, and answered with the target's answer
once a waiter (tasks/waiters.py) sees the task finish.

A queued request expires when its caller's wait ends (or at GATEWAY_TTL_SECONDS,
whichever comes first): a request that no worker has started by the time its
caller got a 504 is never sent.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from app.lifespan import Resources
from auth.caller import ANONYMOUS_ADMIN
from gateway import client
from gateway.exceptions import (
    ForwardFailed,
    ForwardTimedOut,
    NotForwardable,
    TargetFailed,
    TargetTimedOut,
)
from gateway.headers import REQUEST_RECOMPUTED, RawHeaders, end_to_end, from_json, to_json
from gateway.kind import KIND
from gateway.paths import PathRules
from tasks import runs
from tasks import service as task_service
from tasks.handlers import Registry
from tasks.intake import Intake
from tasks.schemas import TaskCreate
from tasks.waiters import Waiters

MAX_MESSAGE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Incoming:
    method: str
    path: str  # decoded: what the path rules match
    target: str  # the path and query string as they were sent
    headers: RawHeaders
    body: bytes
    client: str | None  # whose RATE_LIMIT bucket pays


@dataclass(frozen=True)
class Gateway:
    """What one gateway process holds (opened and closed by its lifespan)."""

    resources: Resources
    registry: Registry
    intake: Intake
    waiters: Waiters
    http: httpx.AsyncClient  # for the paths passed straight through
    rules: PathRules


async def forward(gateway: Gateway, incoming: Incoming) -> client.Exchanged:
    if gateway.rules.passes_through(incoming.path):
        return await pass_through(gateway, incoming)
    return await queued(gateway, incoming)


async def pass_through(gateway: Gateway, incoming: Incoming) -> client.Exchanged:
    settings = gateway.resources.settings
    sent = client.request(
        incoming.method,
        httpx.URL(settings.gateway_target_base_url + incoming.target),
        end_to_end(incoming.headers, drop=REQUEST_RECOMPUTED),
        incoming.body,
        client.timeout_of(settings),
    )
    try:
        return await client.exchange(
            gateway.http, sent, max_body_bytes=settings.gateway_max_body_bytes
        )
    except client.ExchangeFailed as failure:
        if failure.reason == "timeout":
            raise TargetTimedOut(str(failure)) from None
        raise TargetFailed(str(failure)) from None


async def queued(gateway: Gateway, incoming: Incoming) -> client.Exchanged:
    started_s = time.monotonic()
    settings = gateway.resources.settings
    wait_s = settings.gateway_wait_s
    await runs.check_backlog(gateway.resources, KIND)
    body = _task(
        incoming,
        priority=gateway.rules.priority(incoming.path),
        ttl_s=min(settings.gateway_ttl_s, wait_s),
    )
    row, _ = await task_service.create_task(
        intake=gateway.intake, resources=gateway.resources, registry=gateway.registry,
        body=body, caller=ANONYMOUS_ADMIN, client=incoming.client,
    )  # fmt: skip
    row = await task_service.wait_final(
        waiters=gateway.waiters, row=row, timeout_s=wait_s - (time.monotonic() - started_s)
    )
    return answer_of(row, wait_s)


def _task(incoming: Incoming, *, priority: int, ttl_s: float) -> TaskCreate:
    payload: dict[str, Any] = {
        "method": incoming.method,
        "path": incoming.target,
        "headers": to_json(end_to_end(incoming.headers, drop=REQUEST_RECOMPUTED)),
    }
    if incoming.body:
        payload["body_base64"] = base64.b64encode(incoming.body).decode("ascii")
    try:
        return TaskCreate(
            message=f"{incoming.method} {incoming.target}"[:MAX_MESSAGE_CHARS],
            kind=KIND,
            payload=payload,
            priority=priority,
            ttl_seconds=ttl_s,
        )
    except ValidationError as error:
        first = error.errors()[0]
        raise NotForwardable(f"the request cannot be queued: {first['msg']}") from None


def answer_of(row: Any, wait_s: float) -> client.Exchanged:
    """The target's answer stored by the `http` kind; 502 or 504 without one."""
    if row["status"] == "completed":
        result = row["result"]
        return client.Exchanged(
            int(result["status"]),
            from_json(result["headers"]),
            base64.b64decode(result["body_base64"]),
        )
    if row["status"] in ("pending", "processing", "expired"):
        raise ForwardTimedOut(row, wait_s)
    raise ForwardFailed(row)
