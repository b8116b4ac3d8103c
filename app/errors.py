"""Which exceptions mean "a store is unreachable" (answer 503, back off and retry)."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.exceptions
import sqlalchemy.exc

REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
POSTGRES_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
    # Raised as they are where the worker uses the driver connection directly.
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection cut in the middle of an operation can be left "busy".
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, "cannot connect now"
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
)
STORE_ERRORS: tuple[type[Exception], ...] = (
    *REDIS_ERRORS,
    *POSTGRES_ERRORS,
    ConnectionError,
    asyncio.TimeoutError,
    OSError,
)


def store_name(error: BaseException) -> str:
    return "redis" if isinstance(error, REDIS_ERRORS) else "postgres"


def is_store_error(error: BaseException) -> bool:
    if isinstance(error, STORE_ERRORS):
        return True
    # Connection loss mid-statement surfaces as a DBAPIError flagged as a disconnect.
    return isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated


class StoreUnavailable(Exception):
    """A store could not be reached; the API answers 503 naming it."""

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"{store} is unavailable: {reason}")
        self.store = store
