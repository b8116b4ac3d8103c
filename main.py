"""The ASGI app: `uvicorn main:app` (or `taskline api`)."""

from __future__ import annotations

import gc
import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from app.config import Settings, load_settings
from app.docs import install_docs
from app.error_bodies import error_json
from app.headers import SecurityHeaders
from app.http import BodySizeLimit, health_router, install_error_handlers
from app.lifespan import lifespan as resources_lifespan
from app.logs import configure_logging
from app.shutdown import on_exit_signal
from auth.dependencies import document_credentials
from auth.exceptions import AuthError
from auth.lifespan import keyring_lifespan
from auth.router import router as keys_router
from dashboard.login import router as dashboard_login_router
from dashboard.router import router as dashboard_router
from gateway import kind as http_kind
from metrics.router import router as metrics_router
from schedules.router import router as schedules_router
from tasks.batch_router import batch_router
from tasks.batch_schemas import BATCH_MAX_BODY_BYTES
from tasks.exceptions import TaskError
from tasks.fast_create import FastCreate
from tasks.feed import EventFeed
from tasks.handlers import load_handlers
from tasks.intake import Intake
from tasks.router import events_router, queues_router
from tasks.router import router as tasks_router
from tasks.run_router import run_router
from tasks.waiters import Waiters
from tasks.workers_router import workers_router
from topics.dependencies import close_consumers, open_consumers
from topics.messages_router import router as messages_router
from topics.router import queues_router as queue_resources_router
from topics.router import topics_router
from workflows.router import router as workflows_router

DESCRIPTION = """
Taskline runs your Python functions as tasks. Create a task with `POST /tasks`;
it is committed in PostgreSQL, its id rings a doorbell on Redis, and a worker
claims it, runs its handler and records the result here.

Topics and queues carry messages to consumers in any language: publish to a
topic, lease from a queue over HTTP, then ack or nack with the receipt handle.
"""


async def task_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, TaskError)
    headers = dict(error.headers)
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return error_json(error.status_code, error.detail, headers=headers, extra=error.extra)


async def auth_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AuthError)
    return error_json(error.status_code, error.detail, headers=error.headers)


# New objects (allocated less freed) that make the collector walk the young
# generation; Python's default is 700.
YOUNG_OBJECTS = 10_000


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with resources_lifespan(app), keyring_lifespan(app):
        resources = app.state.resources
        intake = Intake(resources)
        waiters = Waiters(resources)
        feed = EventFeed(resources, waiters)
        app.state.intake, app.state.waiters, app.state.feed = intake, waiters, feed
        app.state.consumers = open_consumers(resources)
        intake.start()
        waiters.start()
        feed.start()
        # What start-up made (modules, schemas, routes) lives as long as the
        # app: out of the collector's sight, a full collection no longer walks
        # it. Measured: a third less CPU per task of POST /tasks/batch. Given
        # back at the end, so apps made one after another (tests) leak nothing.
        gc.freeze()
        # A POST /tasks/batch holds thousands of objects until it answers; at
        # the default 700 the young generation was collected (and its objects
        # promoted, to be walked again) a dozen times a batch: 4 µs of a
        # task's 26 (gc.callbacks, 60,000 tasks). From YOUNG_OBJECTS, a
        # batch's objects are gone before a collection comes.
        thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_OBJECTS, *thresholds[1:])

        def shutting_down() -> None:  # long requests end now, not at their deadlines
            feed.shutting_down()
            waiters.shutting_down()

        try:
            with on_exit_signal(shutting_down):
                yield
        finally:
            await feed.close()
            await waiters.close()
            await intake.close()
            await close_consumers(app.state.consumers)
            gc.set_threshold(*thresholds)
            gc.unfreeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    app = FastAPI(
        title="Taskline",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served with local assets by install_docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = load_handlers(settings.handler_modules)
    http_kind.register(app.state.registry)  # the `http` kind (gateway/kind.py)
    app.add_middleware(FastCreate)  # innermost: inside the body limit and the headers
    app.add_middleware(BodySizeLimit, larger={"/tasks/batch": BATCH_MAX_BODY_BYTES})
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
    document_credentials(app)  # before the error bodies' hook, which wraps it
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health_router)
    app.include_router(tasks_router)
    app.include_router(batch_router)
    app.include_router(queues_router)
    app.include_router(keys_router)
    app.include_router(schedules_router)
    app.include_router(workflows_router)
    app.include_router(topics_router)
    app.include_router(queue_resources_router)
    app.include_router(messages_router)
    app.include_router(events_router)
    app.include_router(workers_router)
    app.include_router(run_router(app.state.registry))
    app.include_router(metrics_router)
    app.include_router(dashboard_router)
    app.include_router(dashboard_login_router)
    return app


def _app_from_environment() -> FastAPI:
    settings = load_settings()
    problem = settings.unauthenticated_exposure()
    if problem is not None:
        print(f"taskline: {problem}", file=sys.stderr)
        raise SystemExit(2)
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


app = _app_from_environment()
