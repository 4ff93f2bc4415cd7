"""The ``guahao`` command, run as operators run it: the installed script in its own process.

A subprocess (not ``CliRunner``) because every command calls ``asyncio.run`` and these tests'
own event loop is already running; it also exercises the console-script entry point.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url

from guahao.cli import main
from guahao.platform.clock import to_epoch_ms
from guahao.platform.persistence.database import create_engine
from guahao.platform.persistence.tables import SessionRow, SlotRow
from tests.fixtures.platforms import clinic, confirmed_booking, manual_clock

GUAHAO = Path(sys.executable).parent / "guahao"


def _env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUAHAO_")}
    env.update(GUAHAO_DATA_DIR=str(tmp_path / "cli-data"), GUAHAO_REDIS_URL=redis_url, **extra)
    return env


async def guahao(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = await asyncio.to_thread(
        subprocess.run,
        [str(GUAHAO), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"guahao {' '.join(args)} failed:\n{result.stderr}"
    return result


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_version(tmp_path: Path, redis_url: str) -> None:
    result = await guahao("--version", env=_env(tmp_path, redis_url))
    assert result.stdout.strip() == "guahao, version 0.1.0"


def test_demo_help_describes_the_command_without_starting_anything(tmp_path: Path) -> None:
    # --help never reaches asyncio.run, so it can run in this process.
    result = CliRunner().invoke(
        main, ["demo", "--help"], prog_name="guahao", env={"GUAHAO_DATA_DIR": str(tmp_path / "d")}
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: guahao demo [OPTIONS]")
    assert "Build the demo region" in result.output
    for option in ("--host", "--port", "--days"):
        assert option in result.output
    assert not (tmp_path / "d").exists()


async def test_db_upgrade_creates_the_schema(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    env = _env(tmp_path, redis_url, GUAHAO_DATABASE_URL=database_url)
    result = await guahao("db", "upgrade", env=env)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Upgrading ")
    assert lines[0].endswith(" to head…")
    assert lines[-1] == "done"
    password = make_url(database_url).password
    if password:
        assert password not in result.stdout
    tables = await _tables(database_url)
    assert {"bookings", "slots", "alembic_version"} <= tables

    await guahao("db", "upgrade", env=env)  # again: nothing to do, not an error


async def test_db_upgrade_defaults_to_sqlite_in_the_data_dir(
    tmp_path: Path, redis_url: str
) -> None:
    result = await guahao("db", "upgrade", env=_env(tmp_path, redis_url))
    database = (tmp_path / "cli-data" / "guahao.db").resolve()
    assert str(database) in result.stdout
    assert database.exists()
    assert "bookings" in await _tables(f"sqlite+aiosqlite:///{database}")


async def test_inventory_rebuild_restores_the_hot_pool_from_sql(
    platform, tmp_path: Path, redis_url: str, migrated_database_url: str
) -> None:
    # The command runs on the system clock, so the sessions must lie in the real future.
    clock = manual_clock(platform)
    clock.set(datetime.now(UTC))
    spec = clinic()
    today = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).date()
    days = [today + timedelta(days=i) for i in range(1, 8)]  # exactly one clinic day
    await platform.supply.register_hospital(spec)
    await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, days))
    async with platform.ports.sessions() as session:
        slots = list(
            (
                await session.scalars(
                    select(SlotRow.id)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .where(SessionRow.ends_at > clock.now())
                    .order_by(SlotRow.starts_at)
                )
            ).all()
        )
        total = await session.scalar(select(func.count()).select_from(SlotRow))
    assert slots
    assert len(slots) == total
    await confirmed_booking(platform, slots[0])

    async def pool() -> dict[str, object]:
        found = await platform.ports.inventory.counts(slots, now_ms=to_epoch_ms(clock.now()))
        return {slot_id: found.get(slot_id) for slot_id in slots}

    before = await pool()
    assert before[slots[0]].booked == 1  # type: ignore[union-attr]
    await platform.redis.flushdb()
    assert set((await pool()).values()) == {None}

    key = base64.b64encode(b"k" * 32).decode()
    env = _env(
        tmp_path,
        platform.redis_url,
        GUAHAO_DATABASE_URL=migrated_database_url,
        GUAHAO_DATA_KEY=key,
        GUAHAO_SECRET_KEY=key,
    )
    result = await guahao("inventory", "rebuild", env=env)

    assert result.stdout.strip() == f"rebuilt {len(slots)} slots"
    assert f"{len(slots)}/{len(slots)}" in result.stderr  # the progress bar finished
    assert await pool() == before


@pytest.mark.parametrize(
    ("command", "lists"),
    [
        ([], ["db", "demo", "inventory", "serve"]),
        (["db"], ["upgrade"]),
        (["inventory"], ["rebuild"]),
    ],
)
def test_help_lists_the_subcommands(command: list[str], lists: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="guahao")
    assert result.exit_code == 0, result.output
    for name in lists:
        assert f"  {name} " in result.output
