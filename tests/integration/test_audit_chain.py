"""The audit log is a hash chain: every entry holds the hash of the one before it and its own,
appends from concurrent writers stay one unbroken chain, and a row edited, deleted or slipped in
directly in the database is found (by the service and by ``guahao audit verify``)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import delete, select, update

from guahao.bootstrap import Platform
from guahao.cli import main
from guahao.platform.persistence.audit_chain import GENESIS_HASH
from guahao.platform.persistence.tables import AuditRow


async def add_staff(platform: Platform, count: int, prefix: str = "ops") -> None:
    for i in range(count):
        await platform.staff.create(
            username=f"{prefix}{i}", password="staff-password-1", role="authority_auditor"
        )


async def chain(platform: Platform) -> list[AuditRow]:
    async with platform.ports.sessions() as session:
        return list((await session.scalars(select(AuditRow).order_by(AuditRow.chain_seq))).all())


async def test_each_entry_holds_the_hash_of_the_one_before_and_the_chain_verifies(
    platform: Platform,
) -> None:
    await add_staff(platform, 3)
    rows = await chain(platform)
    assert [r.chain_seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in rows[1:]] == [r.entry_hash for r in rows[:-1]]
    report = await platform.audit.verify()
    assert report.first_break is None
    assert (report.entries, report.head_seq, report.head_hash) == (3, 3, rows[-1].entry_hash)


async def test_concurrent_writers_append_one_unbroken_chain(platform: Platform) -> None:
    await asyncio.gather(
        *(
            platform.staff.create(
                username=f"busy{i}", password="staff-password-1", role="authority_auditor"
            )
            for i in range(12)
        )
    )
    report = await platform.audit.verify()
    assert report.first_break is None
    assert (report.entries, report.head_seq) == (12, 12)


async def test_a_row_edited_in_the_database_is_the_first_broken_link(platform: Platform) -> None:
    await add_staff(platform, 4)
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(
            update(AuditRow).where(AuditRow.chain_seq == 2).values(actor="someone-else")
        )
    report = await platform.audit.verify()
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.reason) == (
        2,
        "content differs from its hash",
    )


async def test_a_row_deleted_from_the_middle_or_the_end_is_found(platform: Platform) -> None:
    await add_staff(platform, 4)
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(delete(AuditRow).where(AuditRow.chain_seq == 4))
    report = await platform.audit.verify()
    assert report.first_break is not None
    assert report.first_break.seq == 4
    assert "head records entry 4" in report.first_break.reason

    async with platform.ports.sessions() as session, session.begin():
        await session.execute(delete(AuditRow).where(AuditRow.chain_seq == 2))
    report = await platform.audit.verify()
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.reason) == (
        2,
        "entry 2 is missing (next is 3)",
    )


async def test_a_rehashed_row_still_breaks_the_link_to_the_next(platform: Platform) -> None:
    """A forger who recomputes an edited row's own hash breaks the next row's previous hash."""
    await add_staff(platform, 3)
    rows = await chain(platform)
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(
            update(AuditRow).where(AuditRow.chain_seq == 2).values(entry_hash="f" * 64)
        )
    report = await platform.audit.verify()
    assert report.first_break is not None
    assert report.first_break.seq == 2
    assert report.first_break.audit_id == rows[1].id


def test_guahao_audit_verify_reports_the_first_broken_link(tmp_path: Path, redis_url: str) -> None:
    """Run in-process through click's runner (a subprocess per command costs seconds each)."""
    runner = CliRunner()
    env = {k: None for k in os.environ if k.startswith("GUAHAO_")}
    env.update(GUAHAO_DATA_DIR=str(tmp_path / "cli-data"), GUAHAO_REDIS_URL=redis_url)
    made = runner.invoke(
        main,
        ["staff", "add", "--username", "ops.one", "--role", "authority_auditor"],
        env={**env, "GUAHAO_STAFF_PASSWORD": "a-long-password-1"},
    )
    assert made.exit_code == 0, made.output
    intact = runner.invoke(main, ["audit", "verify"], env=env)
    assert intact.exit_code == 0, intact.output
    assert intact.stdout.startswith("audit chain intact: 1 entries, head 1 ")

    database = sqlite3.connect(tmp_path / "cli-data" / "guahao.db")
    with database:
        database.execute("UPDATE audit_log SET subject_id = 'x' WHERE chain_seq = 1")
    database.close()
    broken = runner.invoke(main, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert "audit chain BROKEN at entry 1 (audit row id 1): content differs" in broken.stderr
