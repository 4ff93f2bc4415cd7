"""Browser-test fixtures: Debian's chromium (one per test session) and the live app with a
small clinic published (``site``).

The app is the real one (``create_app``) served by uvicorn on a loopback port over the real
platform (SQLite, Redis); the platform's clock is a ``ManualClock`` the tests move, and the
pages count down from what that clock says, so a test can stand just before a release or the
end of a hold without waiting minutes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
import pytest
from playwright.async_api import Browser, async_playwright
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import DoctorRow, SlotRow
from guahao.platform.schedules import HospitalSpec
from tests.e2e.pages.support import AXE, CHROMIUM, CHROMIUM_ARGS, Site
from tests.fixtures.platforms import SESSION_DAY, clinic


def _check_tools() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium fonts-wqy-zenhei")
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run bash infra/setup.sh (npm ci)")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    _check_tools()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def open_site(platform: Platform, base: str, spec: HospitalSpec, *, weeks: int = 1) -> Site:
    """Register ``spec`` and publish its sessions for ``weeks`` weeks from the week of
    ``SESSION_DAY``; index them for search."""
    await platform.supply.register_hospital(spec)
    days = [SESSION_DAY - timedelta(days=2) + timedelta(days=i) for i in range(7 * weeks)]
    await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, days))
    await platform.search.reindex()
    async with platform.ports.sessions() as session:
        doctor_id = await session.scalar(select(DoctorRow.id))
        slots = list((await session.scalars(select(SlotRow.id).order_by(SlotRow.starts_at))).all())
    assert doctor_id is not None
    return Site(base=base, platform=platform, doctor_id=doctor_id, slot_ids=slots)


@pytest.fixture
async def platform(sqlite_platform: Platform) -> Platform:
    """The browser tests serve the embedded default (SQLite) only: what they check is the
    pages, and every service under them runs on both databases in the other suites; running
    each browser journey twice would double the suite's slowest part."""
    return sqlite_platform


@pytest.fixture
async def site(platform: Platform, live_server: str) -> Site:
    """The test clinic (one doctor, Wednesday mornings, 4 units a segment), two weeks
    published: this week's session is open, next week's is released a week before it."""
    return await open_site(platform, live_server, clinic(), weeks=2)


@pytest.fixture
async def quick_hold_site(platform: Platform, live_server: str) -> Site:
    """A clinic whose holds last one minute (the shortest a hospital may set)."""
    spec = clinic()
    spec = msgspec.structs.replace(
        spec, policies=msgspec.structs.replace(spec.policies, hold_minutes=1)
    )
    return await open_site(platform, live_server, spec)
