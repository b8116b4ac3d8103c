"""The gateway's routes: its own under /_gateway/ (a prefix no target path is
forwarded from), then every other path and method, forwarded to the target."""

from __future__ import annotations

import string
from typing import Annotated, Any
from urllib.parse import quote_from_bytes

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from app.http import check_stores
from gateway import service
from gateway.client import Exchanged
from gateway.dependencies import GatewayDep
from gateway.exceptions import HeadersTooLarge, NotAGatewayRoute
from gateway.headers import size
from gateway.payload import MAX_HEADER_BYTES
from gateway.schemas import FORWARD_RESPONSES
from tasks import limits
from tasks import service as task_service
from tasks.schemas import ErrorOut, QueuesOut

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PRINTABLE = "".join(c for c in string.printable if c.isprintable() and not c.isspace())
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "A store is down; see Retry-After."}
}

own_router = APIRouter(prefix="/_gateway", tags=["gateway"])
forward_router = APIRouter(tags=["forwarded"])


@own_router.get("/health", summary="Liveness: the gateway process runs")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@own_router.get(
    "/ready",
    summary="Readiness: PostgreSQL and Redis both answer",
    responses={503: {"description": "One of the stores does not answer."}},
)
async def ready(gateway: GatewayDep) -> JSONResponse:
    checks = await check_stores(gateway.resources)
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", **checks}, status_code=200 if ok else 503
    )


@own_router.get("/queues", response_model=QueuesOut, responses=_UNAVAILABLE, summary="List queues")
async def queues(gateway: GatewayDep) -> QueuesOut:
    """What `GET /queues` of the API says: each queue's pending and processing
    tasks per priority (the gateway's requests are tasks of kind `http`)."""
    return QueuesOut(
        queues=await task_service.queue_overview(resources=gateway.resources, owner=None)
    )


@own_router.api_route("/{rest:path}", methods=list(METHODS), include_in_schema=False)
async def not_ours(request: Request) -> None:
    raise NotAGatewayRoute(request.url.path)


async def forward(
    request: Request,
    path: Annotated[str, Path(description="Any path: forwarded with its query string.")],
    gateway: GatewayDep,
) -> Response:
    """Forwarded to GATEWAY_TARGET_BASE_URL: queued as an `http` task at the
    priority of its path, or, for GATEWAY_PASS_THROUGH and the target's docs,
    at once. The answer is the target's."""
    answer = await service.forward(gateway, await read_incoming(request))
    return as_response(answer)


for _method in METHODS:
    forward_router.add_api_route(
        "/{path:path}", forward, methods=[_method], response_class=Response,
        responses=FORWARD_RESPONSES, operation_id=f"forward_{_method.lower()}",
        summary=f"{_method} to the target, through the queue",
    )  # fmt: skip


async def read_incoming(request: Request) -> service.Incoming:
    scope = request.scope
    headers = list(scope["headers"])
    found = size(headers)
    if found > MAX_HEADER_BYTES:
        raise HeadersTooLarge(found, MAX_HEADER_BYTES)
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    # As sent; bytes no request line should hold (space, non-ASCII) are %-escaped.
    target = quote_from_bytes(raw_path, safe=PRINTABLE)
    if query:
        target += "?" + quote_from_bytes(query, safe=PRINTABLE)
    address = request.client.host if request.client else None
    return service.Incoming(
        method=request.method,
        path=scope["path"],
        target=target,
        headers=headers,
        body=await request.body(),
        client=limits.client_key(None, address),
    )


def as_response(answer: Exchanged) -> Response:
    response = Response(content=answer.body, status_code=answer.status)
    headers = list(answer.headers)
    has_length = any(name.lower() == b"content-length" for name, _ in headers)
    if not has_length and answer.status >= 200 and answer.status not in (204, 304):
        headers.append((b"content-length", str(len(answer.body)).encode()))
    response.raw_headers = headers
    return response
