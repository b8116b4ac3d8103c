"""Which exceptions mean "a store is unreachable" (answer 503, back off and retry)."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.exceptions
import sqlalchemy.exc

REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # A Redis Cluster with a node away: CLUSTERDOWN, MASTERDOWN, TRYAGAIN, the
    # client's redirections run out, a slot no live node serves.
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
)
# What the cluster client raises when it finds no node to ask, or nodes that
# do not serve every slot; its other errors of this type are mistakes (keys of
# two slots in one command) and must not pass for an outage.
_CLUSTER_UNREACHABLE = ("Redis Cluster cannot be connected", "All slots are not covered")
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
    # A deadlock or serialization failure aborted the statement and changed
    # nothing: transient, so retried like an outage, never fatal to a loop.
    asyncpg.exceptions.TransactionRollbackError,
)
STORE_ERRORS: tuple[type[Exception], ...] = (
    *REDIS_ERRORS,
    *POSTGRES_ERRORS,
    ConnectionError,
    asyncio.TimeoutError,
    OSError,
)


def store_name(error: BaseException) -> str:
    return "redis" if isinstance(error, REDIS_ERRORS) or _cluster_unreachable(error) else "postgres"


def _cluster_unreachable(error: BaseException) -> bool:
    return type(error) is redis.exceptions.RedisClusterException and str(error).startswith(
        _CLUSTER_UNREACHABLE
    )


def is_store_error(error: BaseException) -> bool:
    if isinstance(error, STORE_ERRORS) or _cluster_unreachable(error):
        return True
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        # Connection loss mid-statement surfaces as a DBAPIError flagged as a
        # disconnect; a refused connection ("the database system is starting
        # up") as a plain DBAPIError whose cause is the driver's error.
        return error.connection_invalidated or any(
            isinstance(cause, POSTGRES_ERRORS) for cause in _causes(error.orig)
        )
    return False


def _causes(error: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__
    return chain


class StoreUnavailable(Exception):
    """A store could not be reached; the API answers 503 naming it."""

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"{store} is unavailable: {reason}")
        self.store = store
