"""The ASGI app: `uvicorn main:app` (or `taskline api`)."""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from app.config import Settings, load_settings
from app.headers import SecurityHeaders
from app.http import BodySizeLimit, health_router, install_error_handlers
from app.lifespan import lifespan as resources_lifespan
from app.logs import configure_logging
from auth.exceptions import AuthError
from auth.lifespan import keyring_lifespan
from auth.router import router as keys_router
from tasks.exceptions import TaskError
from tasks.handlers import load_handlers
from tasks.intake import Intake
from tasks.router import queues_router
from tasks.router import router as tasks_router

DESCRIPTION = """
Taskline runs your Python functions as tasks. Create a task with `POST /tasks`;
it is committed in PostgreSQL, its id rings a doorbell on Redis, and a worker
claims it, runs its handler and records the result here.
"""


async def task_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, TaskError)
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)


async def auth_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AuthError)
    return JSONResponse(
        {"detail": error.detail}, status_code=error.status_code, headers=error.headers
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with resources_lifespan(app), keyring_lifespan(app):
        intake = Intake(app.state.resources)
        app.state.intake = intake
        intake.start()
        try:
            yield
        finally:
            await intake.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    app = FastAPI(title="Taskline", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = load_handlers(settings.handler_modules)
    app.add_middleware(BodySizeLimit)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origin_list),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After"],
        )
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(TaskError, task_error)
    app.add_exception_handler(AuthError, auth_error)
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(tasks_router)
    app.include_router(queues_router)
    app.include_router(keys_router)
    return app


def _app_from_environment() -> FastAPI:
    settings = load_settings()
    problem = settings.unauthenticated_exposure()
    if problem is not None:
        print(f"taskline: {problem}", file=sys.stderr)
        raise SystemExit(2)
    configure_logging(settings.log_level)
    return create_app(settings)


app = _app_from_environment()
