"""HTTP plumbing shared by every router: body size limit, error answers, health."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel, Field
from redis.exceptions import RedisClusterException
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.error_bodies import (
    MAX_BODY_BYTES,
    RETRY_AFTER,
    ErrorBody,
    error_json,
    with_error_bodies,
)
from app.errors import STORE_ERRORS, StoreUnavailable, is_store_error, store_name
from app.lifespan import Resources
from app.redis import ping

log = logging.getLogger("taskline.api")


def preference(prefer: str | None, name: str) -> str | None:
    """The value of preference `name` in a Prefer header (RFC 7240): its first
    occurrence wins, names are case-insensitive, parameters after `;` are ignored;
    "" for a preference without a value, None when it is not there."""
    for item in (prefer or "").split(","):
        token, _, value = item.split(";", 1)[0].partition("=")
        if token.strip().lower() == name:
            return value.strip().strip('"')
    return None


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, before anything parses them;
    `larger` raises the limit for the paths it names (a route taking many items)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, larger: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await _too_large(max_bytes)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise _BodyTooLarge(max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(max_bytes)(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """An HTTPException, so body parsing lets it through to the JSON error handler."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is over {max_bytes} bytes")


def _too_large(max_bytes: int) -> JSONResponse:
    return error_json(413, f"request body is over {max_bytes} bytes")


async def store_unavailable(request: Request, error: Exception) -> JSONResponse:
    which = error.store if isinstance(error, StoreUnavailable) else store_name(error)
    log.warning("%s unavailable during %s %s: %s", which, request.method, request.url.path, error)
    return error_json(503, f"{which} is unavailable; retry later", headers={"Retry-After": "1"})


async def cluster_error(request: Request, error: Exception) -> JSONResponse:
    """The cluster client found no node to ask: a 503 like any store outage.
    Its other errors of this type are mistakes: a 500."""
    if is_store_error(error):
        return await store_unavailable(request, error)
    raise error


async def request_invalid(request: Request, error: Exception) -> JSONResponse:
    """422 with where and why, but not the input: it may be huge, or not even JSON (NaN)."""
    assert isinstance(error, RequestValidationError)
    errors = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]
    if _not_json(request, errors):
        errors = [{"loc": ["body"], "msg": JSON_EXPECTED, "type": "json_expected"}]
    return error_json(422, validation_sentence(errors), errors=errors)


JSON_EXPECTED = "a JSON body is expected (Content-Type: application/json)"


def _not_json(request: Request, errors: list[dict[str, Any]]) -> bool:
    """The body was refused because it was not declared JSON (curl -d sends a
    form; some clients send no Content-Type): FastAPI reads it as JSON only then."""
    if not any(item["loc"][:1] == ["body"] for item in errors):
        return False
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media != "application/json" and not media.endswith("+json")


def validation_sentence(errors: list[dict[str, Any]]) -> str:
    """The `detail` of a 422 for these `errors` (each with loc, msg, type)."""
    first = errors[0]
    if first["type"] == "json_expected":
        return JSON_EXPECTED
    if first["type"] == "json_invalid":
        return "the request body is not valid JSON"
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more; see errors)" if len(errors) > 1 else ""
    return f"invalid request: {where}: {first['msg']}{more}"


async def http_error(request: Request, error: Exception) -> Response:
    """Starlette's own answers (404 no route, 405 ...) in the one shape; a 405
    names every method of the path, not only those of the first route found."""
    assert isinstance(error, StarletteHTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    if not is_body_allowed_for_status_code(error.status_code):
        return Response(status_code=error.status_code, headers=headers)
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    return error_json(error.status_code, detail, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of this path answers: asked of the routes
    themselves, so included routers count too."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.routes):
            allowed.append(method)
    return allowed


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for error_type in (*STORE_ERRORS, StoreUnavailable):
        app.add_exception_handler(error_type, store_unavailable)
    app.add_exception_handler(RedisClusterException, cluster_error)
    app.openapi = with_error_bodies(app)  # type: ignore[method-assign]


health_router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: Literal["ready"]
    postgres: str = Field(description="`ok`, or `unavailable: <why>`.")
    redis: str = Field(description="`ok`, or `unavailable: <why>`.")


class NotReady(ErrorBody):
    status: Literal["unavailable"]
    postgres: str = Field(description="`ok`, or `unavailable: <why>`.")
    redis: str = Field(description="`ok`, or `unavailable: <why>`.")


@health_router.get("/health", summary="Liveness: the process runs")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness: PostgreSQL and Redis both answer",
    responses={
        503: {
            "model": NotReady,
            "description": "A store does not answer; the body says which.",
            "headers": {"Retry-After": RETRY_AFTER},
        }
    },
)
async def ready(request: Request) -> JSONResponse:
    resources: Resources = request.app.state.resources
    checks = await check_stores(resources)
    down = [store for store, state in checks.items() if state != "ok"]
    if not down:
        return JSONResponse({"status": "ready", **checks})
    detail = f"{' and '.join(down)} {'does' if len(down) == 1 else 'do'} not answer"
    body = {"detail": detail, "status": "unavailable", **checks}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


async def check_stores(resources: Resources) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        async with resources.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as error:
        checks["postgres"] = f"unavailable: {type(error).__name__}"
    try:
        await ping(resources.redis)
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"unavailable: {type(error).__name__}"
    return checks
