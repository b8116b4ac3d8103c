"""The gateway's ASGI app: `taskline gateway` serves it on GATEWAY_HOST:GATEWAY_PORT.

It is an API process of its own: its own intake (so its requests are admitted
like any POST), its own waiters and ONE event feed that wakes them, and one
HTTP client pool for the paths it passes straight through. The requests it
queues are run by the ordinary workers.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.config import Settings, load_settings
from app.http import BodySizeLimit, install_error_handlers
from app.lifespan import lifespan as resources_lifespan
from app.shutdown import on_exit_signal
from gateway import client, kind
from gateway.paths import PathRules
from gateway.router import forward_router, own_router
from gateway.service import Gateway
from tasks.exceptions import TaskError
from tasks.feed import EventFeed
from tasks.handlers import load_handlers
from tasks.intake import Intake
from tasks.waiters import Waiters

DESCRIPTION = """
Taskline's gateway queues every request to its target API as a task, runs it
on the workers at the pace the target can take, and answers with the target's
answer. Its own routes live under `/_gateway/`; every other path is forwarded.
"""


async def gateway_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, TaskError)
    headers = dict(error.headers)
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    body = {"detail": error.detail, **error.extra}
    return JSONResponse(body, status_code=error.status_code, headers=headers)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with resources_lifespan(app):
        resources = app.state.resources
        intake, waiters = Intake(resources), Waiters(resources)
        feed = EventFeed(resources, waiters)
        http = client.new_client(resources.settings)
        app.state.gateway = Gateway(
            resources, app.state.registry, intake, waiters, http,
            PathRules.from_settings(resources.settings),
        )  # fmt: skip
        intake.start()
        waiters.start()
        feed.start()

        def shutting_down() -> None:  # waiting requests answer now
            feed.shutting_down()
            waiters.shutting_down()

        try:
            with on_exit_signal(shutting_down):
                yield
        finally:
            await feed.close()
            await waiters.close()
            await intake.close()
            await http.aclose()


def create_gateway_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    if not settings.gateway_target_base_url:
        raise ValueError("GATEWAY_TARGET_BASE_URL is not set: the gateway has no target")
    app = FastAPI(
        title="Taskline gateway",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/_gateway/docs",
        redoc_url="/_gateway/redoc",
        openapi_url="/_gateway/openapi.json",
        swagger_ui_oauth2_redirect_url="/_gateway/docs/oauth2-redirect",
    )
    app.state.settings = settings
    app.state.registry = load_handlers(settings.handler_modules)
    kind.register(app.state.registry)
    app.add_middleware(BodySizeLimit, max_bytes=settings.gateway_max_request_bytes)
    app.add_exception_handler(TaskError, gateway_error)
    install_error_handlers(app)
    app.include_router(own_router)
    app.include_router(forward_router)
    return app
