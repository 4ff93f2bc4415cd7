"""``guahao lottery mark``: an operator makes a session a lottery from the command line."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from guahao.platform.clock import to_epoch_ms
from guahao.platform.persistence.tables import SessionRow, SlotRow
from tests.fixtures.platforms import manual_clock
from tests.integration.offer_scenarios import one_slot_clinic
from tests.integration.test_cli import GUAHAO, _env


async def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [str(GUAHAO), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_an_operator_marks_a_session_as_a_lottery_before_its_release(
    sqlite_platform, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    platform = sqlite_platform
    clock = manual_clock(platform)
    clock.set(datetime.now(UTC))  # the command runs on the system clock
    spec = one_slot_clinic(sessions=((0, one_slot_clinic().roster[0].period),))
    today = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).date()
    days = [today + timedelta(days=i) for i in range(10, 17)]  # one Monday, released later
    await platform.supply.register_hospital(spec)
    await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, days))
    async with platform.ports.sessions() as session:
        sess = await session.scalar(select(SessionRow))
        assert sess is not None
        slot = await session.scalar(select(SlotRow.id))
    env = _env(tmp_path, redis_url, GUAHAO_DATABASE_URL=sqlite_url)

    naive = await run("lottery", "mark", sess.id, "--draw", "2030-01-01T08:00", env=env)
    assert naive.returncode != 0
    assert "give the zone" in naive.stderr

    marked = await run("lottery", "mark", sess.id, env=env)
    assert marked.returncode == 0, marked.stderr
    assert sess.id in marked.stdout
    async with platform.ports.sessions() as session:
        again = await session.get(SessionRow, sess.id)
        assert again is not None
        assert (again.allocation, again.lottery_draw_at) == ("lottery", sess.release_at)
    counts = await platform.ports.inventory.counts([slot], now_ms=to_epoch_ms(clock.now()))
    assert counts[slot].status == "lottery"

    twice = await run(
        "lottery",
        "mark",
        sess.id,
        "--opens",
        "2020-01-01T00:00+08:00",
        "--draw",
        "2020-01-02T00:00+08:00",
        env=env,
    )
    assert twice.returncode != 0
    assert "LOTTERY_WINDOW_INVALID" in twice.stderr
