"""FastAPI dependencies of the task feature, as named `Annotated` aliases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from sqlalchemy.ext.asyncio import AsyncSession

from app.http import preference
from app.lifespan import Resources
from app.redis import RedisClient
from auth.caller import Caller, Scope
from auth.dependencies import CallerDep, require
from tasks import limits, repository
from tasks.exceptions import TaskNotFound
from tasks.feed import EventFeed
from tasks.handlers import Registry
from tasks.intake import Intake
from tasks.models import Task
from tasks.waiters import Waiters

# Every dependency is `async def`: a plain `def` would be run in a thread pool.


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with resources.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_redis(resources: ResourcesDep) -> RedisClient:
    return resources.redis


RedisDep = Annotated[RedisClient, Depends(get_redis)]


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


async def get_intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(get_intake)]


async def get_waiters(request: Request) -> Waiters:
    waiters: Waiters = request.app.state.waiters
    return waiters


WaitersDep = Annotated[Waiters, Depends(get_waiters)]


async def get_feed(request: Request) -> EventFeed:
    feed: EventFeed = request.app.state.feed
    return feed


FeedDep = Annotated[EventFeed, Depends(get_feed)]


def client_of(request: Request, caller: Caller) -> str:
    """Who is asking, for the rate limit: the key's owner (AUTH=keys), else the
    X-API-Key header (hashed), else the address."""
    if caller.key_id is not None and caller.owner is not None:
        return limits.owner_key(caller.owner)
    address = request.client.host if request.client else None
    return limits.client_key(request.headers.get("x-api-key"), address)


async def get_client(request: Request, caller: CallerDep) -> str:
    return client_of(request, caller)


ClientDep = Annotated[str, Depends(get_client)]


@dataclass(frozen=True, slots=True)
class Writer:
    """What creating tasks takes (POST /tasks, /tasks/batch, /run): the API
    process's parts and who asks, with `tasks:write`. One dependency for all of
    it, so the caller is resolved once per request, not once for the scope
    check and again for the route."""

    intake: Intake
    resources: Resources
    registry: Registry
    waiters: Waiters
    caller: Caller
    client: str


async def get_writer(
    request: Request, caller: Annotated[Caller, Security(require, scopes=[Scope.TASKS_WRITE])]
) -> Writer:
    state = request.app.state
    return Writer(
        state.intake, state.resources, state.registry, state.waiters, caller,
        client_of(request, caller),
    )  # fmt: skip


WriterDep = Annotated[Writer, Depends(get_writer)]


async def get_return_minimal(
    prefer: Annotated[
        str | None,
        Header(
            max_length=1024,
            description="RFC 7240. `return=minimal`: each created or replayed item is"
            " answered with its task's `id` instead of the whole task.",
        ),
    ] = None,
) -> bool:
    return preference(prefer, "return") == "minimal"


# Prefer: return=minimal (the answer sends ids, not whole tasks).
ReturnMinimalDep = Annotated[bool, Depends(get_return_minimal)]


async def valid_task(task_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> Task:
    """The task, if the caller's tenant owns it: another tenant's task is not
    found, exactly like an id that does not exist."""
    task = await repository.get_task(session=session, task_id=task_id, owner=caller.tenant)
    if task is None:
        raise TaskNotFound(task_id)
    return task


TaskDep = Annotated[Task, Depends(valid_task)]
