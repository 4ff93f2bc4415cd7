"""The database fixtures hand every test a real, empty database of its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fixtures.databases import PostgresServer, fresh_postgres_database

_names_seen: set[str] = set()


async def _scalar(url: str, sql: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(sql))).scalar_one()
    finally:
        await engine.dispose()


async def test_every_backend_url_accepts_connections(database_url: str) -> None:
    assert await _scalar(database_url, "SELECT 1") == 1


async def test_sqlite_url_names_a_new_file_in_the_tests_own_directory(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = make_url(sqlite_url).database
    assert path is not None
    assert Path(path).parent == tmp_path
    assert not await asyncio.to_thread(Path(path).exists)
    assert await _scalar(sqlite_url, "SELECT count(*) FROM sqlite_master") == 0
    assert await asyncio.to_thread(Path(path).exists)


@pytest.mark.postgres
@pytest.mark.parametrize("visit", ["first", "second"])
async def test_each_postgres_test_gets_a_fresh_database_of_its_own(
    postgres_url: str, postgres_server: PostgresServer, visit: str
) -> None:
    name = make_url(postgres_url).database
    assert name is not None
    assert name not in _names_seen, "a database name was handed out twice"
    assert name != make_url(postgres_server.admin_url).database
    _names_seen.add(name)
    engine = create_async_engine(postgres_url)
    try:
        async with engine.begin() as connection:
            assert (await connection.execute(text("SELECT current_database()"))).scalar_one() == (
                name
            )
            tables = await connection.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            )
            assert tables.scalar_one() == 0, f"{visit} visit found tables left by another test"
            # Leave something behind: the next visit must not see it.
            await connection.execute(text("CREATE TABLE left_behind (id integer PRIMARY KEY)"))
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_fresh_postgres_database_is_dropped_even_with_a_connection_left_open(
    postgres_server: PostgresServer,
) -> None:
    async with fresh_postgres_database(postgres_server, "dropped") as url:
        name = make_url(url).database
        assert name is not None
        engine = create_async_engine(url)
        connection = await engine.connect()
        await connection.execute(text("SELECT 1"))
        assert await postgres_server.database_exists(name)
    try:
        assert not await postgres_server.database_exists(name)
    finally:
        await connection.invalidate()
        await connection.close()
        await engine.dispose()
