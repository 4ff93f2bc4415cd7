"""A backup restores into a platform that serves what it had: the operator's round trip.

PostgreSQL: ``pg_dump --format=custom`` of a live platform, ``pg_restore`` into a new
database. SQLite (the embedded default): the online backup API. Either way the restored record
is opened by a platform with an empty Redis, the hot pool is rebuilt from SQL (``guahao
inventory rebuild``, as docs/operations.md prescribes), and then every table holds what it
held, personal data decrypts with the same data key, the slots count what they counted, and
booking goes on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import Base, BookingRow
from infra import local_postgres
from tests.fixtures.databases import PostgresServer, sqlite_url_in
from tests.fixtures.platforms import (
    _open,
    confirmed_booking,
    counts,
    held_with_patient,
    publish_clinic,
)


async def table_counts(platform: Platform) -> dict[str, int]:
    found = {}
    async with platform.ports.sessions() as session:
        for table in Base.metadata.sorted_tables:
            found[table.name] = int(
                await session.scalar(select(func.count()).select_from(table)) or 0
            )
    return found


async def pg_round_trip(server: PostgresServer, url: str, backup: Path) -> str:
    """Dump ``url`` with pg_dump, restore it into a new database; returns that one's URL."""
    source = make_url(url)
    connection = [
        f"--host={source.host}",
        f"--port={source.port}",
        f"--username={source.username}",
    ]
    dump = await asyncio.create_subprocess_exec(
        str(local_postgres.find_binary("pg_dump")),
        *connection,
        "--format=custom",
        f"--file={backup}",
        str(source.database),
    )
    assert await dump.wait() == 0
    name = f"restored_{uuid.uuid4().hex[:12]}"
    await server.execute_admin(f'CREATE DATABASE "{name}"')
    restore = await asyncio.create_subprocess_exec(
        str(local_postgres.find_binary("pg_restore")),
        *connection,
        "--no-owner",
        "--exit-on-error",
        f"--dbname={name}",
        str(backup),
    )
    assert await restore.wait() == 0
    return server.url_of(name)


def sqlite_round_trip(url: str, directory: Path) -> str:
    """Copy the live SQLite file with the online backup API (consistent while in use)."""
    source = sqlite3.connect(str(make_url(url).database))
    directory.mkdir()
    target = sqlite3.connect(str(directory / "guahao.db"))
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return sqlite_url_in(directory)


async def test_a_backup_restores_into_a_platform_that_serves_what_it_had(
    platform: Platform, redis_url: str, tmp_path: Path, request: Any
) -> None:
    slots = await publish_clinic(platform)
    _, booking_id, _ = await confirmed_booking(platform, slots[0])
    held_account, _, held_id = await held_with_patient(platform, slots[1])
    before_counts = await table_counts(platform)
    before_slots = [await counts(platform, s) for s in slots[:2]]
    url = platform.settings.resolved_database_url()

    if platform.engine.dialect.name == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        restored_url = await pg_round_trip(server, url, tmp_path / "guahao.dump")
    else:
        restored_url = await asyncio.to_thread(sqlite_round_trip, url, tmp_path / "restored")

    # another machine: the restored database, an empty Redis (_open flushes it), same keys
    async for restored in _open(tmp_path / "node-b", restored_url, redis_url, migrate=True):
        assert await table_counts(restored) == before_counts
        await restored.inventory_sync.rebuild_all()
        assert [await counts(restored, s) for s in slots[:2]] == before_slots
        async with restored.ports.sessions() as session:
            confirmed = await session.get(BookingRow, booking_id)
            held = await session.get(BookingRow, held_id)
        assert confirmed is not None
        assert confirmed.status == "confirmed"
        assert held is not None
        assert held.status == "patient_chosen"
        # personal data decrypts with the same data key
        patients = await restored.accounts.patients(held_account)
        assert patients
        assert all(p.name == "张三" for p in patients)
        # and it books: the unit held before the backup is still held, the next one is free
        _, _, new_id = await held_with_patient(restored, slots[2])
        assert new_id
