"""HTTP plumbing shared by every router: body size limit, error answers, health."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import STORE_ERRORS, StoreUnavailable, store_name
from app.lifespan import Resources

log = logging.getLogger("taskline.api")

MAX_BODY_BYTES = 1024 * 1024


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes)(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """An HTTPException, so body parsing lets it through to the JSON error handler."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is over {max_bytes} bytes")


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body is over {max_bytes} bytes"}, status_code=413)


async def store_unavailable(request: Request, error: Exception) -> JSONResponse:
    which = error.store if isinstance(error, StoreUnavailable) else store_name(error)
    log.warning("%s unavailable during %s %s: %s", which, request.method, request.url.path, error)
    return JSONResponse(
        {"detail": f"{which} is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def request_invalid(request: Request, error: Exception) -> JSONResponse:
    """422 with where and why, but not the input: it may be huge, or not even JSON (NaN)."""
    assert isinstance(error, RequestValidationError)
    detail = [
        {"type": item["type"], "loc": list(item["loc"]), "msg": item["msg"]}
        for item in error.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, request_invalid)
    for error_type in (*STORE_ERRORS, StoreUnavailable):
        app.add_exception_handler(error_type, store_unavailable)


health_router = APIRouter(tags=["health"])


@health_router.get("/health", summary="Liveness: the process runs")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get(
    "/ready",
    summary="Readiness: PostgreSQL and Redis both answer",
    responses={503: {"description": "One of the stores does not answer."}},
)
async def ready(request: Request) -> JSONResponse:
    resources: Resources = request.app.state.resources
    checks = await check_stores(resources)
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", **checks}, status_code=200 if ok else 503
    )


async def check_stores(resources: Resources) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        async with resources.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as error:
        checks["postgres"] = f"unavailable: {type(error).__name__}"
    try:
        await resources.redis.ping()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"unavailable: {type(error).__name__}"
    return checks
