"""Which errors mean "a store is unreachable": the worker backs off on those
and stops on anything else, so a wrong answer either way is a real fault."""

from __future__ import annotations

import asyncpg
import sqlalchemy.exc

from app.errors import is_store_error


def wrapped(driver_error: Exception) -> sqlalchemy.exc.DBAPIError:
    """As SQLAlchemy's asyncpg adapter raises it: DBAPIError, its adapter error,
    caused by the driver's own."""

    class AdapterError(Exception):
        pass

    adapter = AdapterError(str(driver_error))
    adapter.__cause__ = driver_error
    return sqlalchemy.exc.DBAPIError("SELECT 1", None, adapter)


def test_a_server_starting_up_or_shutting_down_is_a_store_error() -> None:
    for message in ("the database system is starting up", "the database system is shutting down"):
        assert is_store_error(wrapped(asyncpg.exceptions.CannotConnectNowError(message)))


def test_a_refused_connection_is_a_store_error() -> None:
    assert is_store_error(ConnectionRefusedError(111, "Connect call failed"))


def test_a_bad_statement_is_not_a_store_error() -> None:
    assert not is_store_error(wrapped(asyncpg.exceptions.UndefinedTableError("no such table")))
    assert not is_store_error(ValueError("a bug"))
