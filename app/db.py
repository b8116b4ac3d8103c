"""The engine, the sessionmaker and the declarative base."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from app.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def driver_options(pooler: str) -> dict[str, Any]:
    """asyncpg's connect arguments for DATABASE_POOLER.

    Behind a pooler in transaction mode, two statements of one client may run on
    two server connections, so a statement prepared by name on one is unknown on
    the other (or its name already taken there). With both statement caches off,
    asyncpg's and SQLAlchemy's, every statement is the unnamed one, parsed,
    bound and run in one exchange that the pooler keeps on one server
    connection. Costs a parse per statement, which is why it is not the default.
    """
    if pooler == "transaction":
        return {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
    return {}


def create_engine(settings: Settings) -> AsyncEngine:
    """One engine per process.

    Every statement runs in autocommit: each state change is one conditional
    statement, so BEGIN/COMMIT would only add two round trips. No ping before a
    checkout either: a connection broken by a database restart fails its first
    statement (503 in the API, a retry in the worker) and SQLAlchemy then
    replaces the whole pool.
    """
    engine = create_async_engine(
        settings.db_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=5,
        connect_args={
            "timeout": 5,
            "command_timeout": 30,
            **driver_options(settings.database_pooler),
        },
        echo=False,
    )
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
