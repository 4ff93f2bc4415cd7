"""Live availability in real browsers: what one citizen does is seen by every other viewer of
the doctor's page at once (server-sent events fed through Redis pub/sub), and a release
moment counts down, then opens, then the units fall while others book."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from playwright.async_api import Browser, expect

from guahao.web.pages.messages import Translator
from tests.e2e.pages.support import Site, new_phone, shot, sign_in
from tests.fixtures.platforms import (
    SESSION_DAY,
    at_local,
    available,
    manual_clock,
    new_account,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

zh = Translator("zh")


async def test_leaving_the_patient_step_frees_the_unit_and_another_browser_sees_it_at_once(
    site: Site, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    slot = site.slot_ids[0]
    holder_context, holder = await site.page(browser)
    viewer_context, viewer = await site.page(browser)
    try:
        await viewer.goto(f"/doctors/{site.doctor_id}")
        units = viewer.locator(f"[data-slot-left='{slot}']")
        await expect(units).to_have_text(zh("doctor.left", n=4))
        await expect(viewer.locator("#live-state")).to_have_class(re.compile(r"\bon\b"))

        await holder.goto(f"/sign-in?next=/doctors/{site.doctor_id}")
        await sign_in(holder, caplog, new_phone())
        await holder.locator(f"button[data-slot='{slot}']").click()
        await expect(holder.locator("#hold")).to_be_visible()
        await expect(units).to_have_text(zh("doctor.left", n=3))
        assert await available(site.platform, slot) == 3

        # back from the patient step: the page gives the unit back (sendBeacon on pagehide)
        await holder.go_back()
        await expect(holder.locator("h1")).to_contain_text("王伟")
        await expect(units).to_have_text(zh("doctor.left", n=4))
        assert await available(site.platform, slot) == 4
        await expect(holder.locator(f"[data-slot-left='{slot}']")).to_have_text(
            zh("doctor.left", n=4)
        )
    finally:
        await holder_context.close()
        await viewer_context.close()


async def test_release_moment_counts_down_then_units_fall_live_while_others_book(
    site: Site, browser: Browser
) -> None:
    platform = site.platform
    clock = manual_clock(platform)
    release = at_local(SESSION_DAY, 8)  # next Wednesday's session opens a week before
    next_week = site.slot_ids[8]  # the first segment of next Wednesday
    clock.set(release - timedelta(seconds=10))

    context, page = await site.page(browser)
    try:
        await page.goto(f"/doctors/{site.doctor_id}")
        button = page.locator(f"button[data-slot='{next_week}']")
        await expect(button).to_be_disabled()
        countdown = page.locator(".countdown[data-release]")
        await expect(countdown).to_have_text(re.compile(r"^0:(0[1-9]|10)$"))
        section = f"section:has(button[data-slot='{next_week}'])"
        await shot(page, "release-countdown-zh", scroll_to=section)

        clock.set(release)  # the platform reaches the release time as the page's count ends
        await expect(countdown).to_have_text(zh("doctor.releasing"), timeout=25_000)
        await expect(button).to_be_enabled()
        units = page.locator(f"[data-slot-left='{next_week}']")
        await expect(units).to_have_text(zh("doctor.left", n=4))

        # other citizens book: every hold is published, and the page follows live
        for left in (3, 2, 1, 0):
            account = await new_account(platform)
            await platform.bookings.hold(
                account_id=account, slot_id=next_week, idempotency_key=uuid.uuid4().hex
            )
            await platform.dispatcher.dispatch_pending()
            expected = zh("doctor.left", n=left) if left else zh("doctor.full")
            await expect(units).to_have_text(expected)
            if left == 2:
                await shot(page, "release-live-zh", scroll_to=section)
        await expect(button).to_be_disabled()
    finally:
        await context.close()
