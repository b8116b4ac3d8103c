"""Open and close the resources a process needs; shared by the API and the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.redis import Keys, RedisClient, create_redis


@dataclass(frozen=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: RedisClient
    keys: Keys


def open_resources(settings: Settings) -> Resources:
    """Create the pools. Nothing connects yet, so this never fails on a store that is down."""
    engine = create_engine(settings)
    return Resources(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        redis=create_redis(settings),
        keys=Keys(settings.redis_queue_name),
    )


async def close_resources(resources: Resources) -> None:
    with suppress(Exception):
        await resources.redis.aclose()
    await resources.engine.dispose()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    resources = open_resources(app.state.settings)
    app.state.resources = resources
    try:
        yield
    finally:
        await close_resources(resources)
