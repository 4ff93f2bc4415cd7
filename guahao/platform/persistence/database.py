"""Engines, sessions and migrations for both backends of the record of truth.

SQLite (embedded default) runs in WAL mode with foreign keys on and a busy timeout, so one app
process with many coroutines behaves; PostgreSQL (production) uses asyncpg. The schema is
always made by Alembic migrations, never by ``create_all``, so tests exercise the same DDL
production runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

__all__ = [
    "alembic_config",
    "create_engine",
    "of_backend",
    "session_factory",
    "upgrade",
    "upgrade_async",
]

MIGRATIONS = Path(__file__).parent / "migrations"

POOL_SIZE = 40
"""PostgreSQL connections one process keeps by default (``database_pool_size``), and never
more: a request that finds them all busy waits for one rather than opening a connection that
is closed again on its return (the profile of granted holds spent a tenth of its time
connecting, TLS negotiation included, with a pool of 20 plus 20 overflow under 64 connections;
bench/profiles/). Last in, first out: at a moderate rate a few connections stay hot and the
rest idle, rather than all lukewarm."""

POOL_TIMEOUT_SECONDS = 30.0
"""How long a request waits for a busy pool's connection by default
(``database_pool_timeout_seconds``) before it is answered 503 with Retry-After."""

IDLE_PING_SECONDS = 10.0
"""A pooled connection idle longer than this is pinged before use, one used more recently is
not. A connection the server closed (a restart, an administrator's terminate) is noticed by
the driver as it happens and is replaced at checkout without a round trip; the ping is for
links that died silently (a firewall's idle timeout), which only long idleness allows. Under
load no request pays a round trip for the ping (``pool_pre_ping`` pinged on every checkout:
a seventh of a granted hold, bench/profiles/)."""

_CHECKED_IN_AT = "guahao_checked_in_at"


def of_backend(backend: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for ``backend`` (a dialect's name): the models' constraints
    and indexes made on another backend only (``ddl_if(dialect=...)``: a booking's foreign keys
    to its slot and session, tables.py) are not expected in this one's schema.

    >>> from sqlalchemy import Column, Index, Integer, MetaData, Table
    >>> t = Table("t", MetaData(), Column("a", Integer))
    >>> only_pg = Index("ix_t_a", t.c.a).ddl_if(dialect="postgresql")
    >>> of_backend("postgresql")(only_pg, "ix_t_a", "index", False, None)
    True
    >>> of_backend("sqlite")(only_pg, "ix_t_a", "index", False, None)
    False
    """

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        ddl_if = None if reflected else getattr(obj, "_ddl_if", None)
        dialect = getattr(ddl_if, "dialect", None)
        return dialect is None or backend in ((dialect,) if isinstance(dialect, str) else dialect)

    return include


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = POOL_SIZE,
    pool_timeout: float = POOL_TIMEOUT_SECONDS,
) -> AsyncEngine:
    """An async engine tuned for the backend named by ``url``.

    The pool's size and wait apply to PostgreSQL: a SQLite file is one process's, and its
    writers queue on the database's lock (the busy timeout), not on connections."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(
            pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout, pool_use_lifo=True
        )
    engine = create_async_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        dialect = engine.dialect

        def checked_in(_dbapi_connection: Any, record: Any) -> None:
            record.info[_CHECKED_IN_AT] = time.monotonic()

        def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
            since = record.info.pop(_CHECKED_IN_AT, None)
            if since is None:
                return  # just opened
            # Raising DisconnectionError makes the pool replace the connection and try again.
            if record.driver_connection.is_closed():
                raise exc.DisconnectionError("the server closed this pooled connection")
            if time.monotonic() - since < IDLE_PING_SECONDS:
                return
            try:
                dialect.do_ping(dbapi_connection)
            except Exception as error:
                raise exc.DisconnectionError(str(error)) from error

        event.listen(engine.sync_engine.pool, "checkin", checked_in)
        event.listen(engine.sync_engine.pool, "checkout", checked_out)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    """An Alembic configuration pointing at our migrations, for ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (synchronous; runs its own loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """``upgrade`` from inside a running event loop (Alembic's env runs its own loop)."""
    await asyncio.to_thread(upgrade, url, revision)
