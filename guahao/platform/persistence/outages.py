"""Telling "the database is away for now" from every other database error.

SQLAlchemy wraps what asyncpg reports while PostgreSQL shuts down or starts up
(``AdminShutdownError`` 57P01, ``CannotConnectNowError`` 57P03, ...) in a bare ``DBAPIError``,
not an ``OperationalError``, so a handler that maps only the latter to 503 answered those
edges with 500s. The SQLSTATE classes below are the ones PostgreSQL documents as "try again":
a retry after the server is back succeeds unchanged. A SQLite file locked past its busy
timeout is the embedded equivalent.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

__all__ = ["is_database_outage"]

_OUTAGE_SQLSTATES: Final = ("08", "57P", "53")
"""Connection exceptions (08), operator intervention: shutdown, crash, starting up (57P),
insufficient resources such as too many connections (53)."""


def is_database_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot answer now (a retry later may succeed).

    >>> from sqlalchemy.exc import IntegrityError
    >>> is_database_outage(IntegrityError("INSERT", {}, Exception("unique")))
    False
    >>> is_database_outage(OperationalError("SELECT 1", {}, Exception("refused")))
    True
    >>> is_database_outage(PoolTimeoutError("QueuePool limit of size 40 overflow 0 reached"))
    True
    """
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        # the pool lent no connection within its timeout: every one is busy (an overload the
        # crowd of a release can cause); a retry a moment later succeeds unchanged
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATES):
            return True
        if isinstance(current, sqlite3.OperationalError) and "locked" in str(current):
            return True
        if isinstance(current, ConnectionError | OSError) and not isinstance(
            current, sqlite3.Error
        ):
            return True
        nested = current.orig if isinstance(current, DBAPIError) else None
        current = nested or current.__cause__ or current.__context__
    return False
