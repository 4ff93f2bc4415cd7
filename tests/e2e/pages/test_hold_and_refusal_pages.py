"""The hold running out on the patient step, and a banned patient refused with the reason and
the way to appeal, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from guahao.web.pages.messages import Translator
from tests.e2e.pages.support import Site, axe_serious, new_phone, shot, sign_in
from tests.fixtures.platforms import available, manual_clock, patient_named, resident_id
from tests.fixtures.staff import staff_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]

zh = Translator("zh")
en = Translator("en")


async def test_the_hold_countdown_runs_out_and_the_unit_goes_back(
    quick_hold_site: Site, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    site = quick_hold_site
    slot = site.slot_ids[0]
    context, page = await site.page(browser)
    try:
        await page.goto(f"/sign-in?next=/doctors/{site.doctor_id}")
        await sign_in(page, caplog, new_phone())
        await page.locator(f"button[data-slot='{slot}']").click()
        countdown = page.locator("#hold-countdown")
        await expect(countdown).to_have_text(re.compile(r"^(1:00|0:[1-5]\d)$"))
        assert await available(site.platform, slot) == 3

        manual_clock(site.platform).advance(seconds=50)  # ten seconds of the hold left
        await page.reload()
        await expect(countdown).to_have_text(re.compile(r"^0:(0[1-9]|10)$"))
        await expect(page.locator("#hold-expired")).to_be_visible(timeout=25_000)
        await expect(countdown).to_have_text(zh("flow.hold_expired"))
        await expect(page.locator("#add-patient button[type=submit]")).to_be_disabled()
        await shot(page, "booking-hold-expired-zh")

        manual_clock(site.platform).advance(seconds=11)
        assert await available(site.platform, slot) == 4  # the hold lapsed in the pool
    finally:
        await context.close()


async def test_a_banned_patient_is_refused_with_the_reason_and_can_appeal(
    site: Site, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    platform = site.platform
    context, page = await site.page(browser, lang="en")
    try:
        await page.goto("/me/patients")
        await sign_in(page, caplog, new_phone())
        await expect(page.locator("h1")).to_have_text(en("me.patients"))
        await page.locator("#p-name").fill("赵六")
        await page.locator("#p-relation").select_option("self")
        await page.locator("#p-docno").fill(resident_id(7_654_321))
        await page.locator("#add-patient button[type=submit]").click()
        await expect(page.locator("main")).to_contain_text("赵六")

        found = await patient_named(platform, "赵六")
        assert found is not None
        person_id = found.person_id
        admin = await staff_of(platform, "admin", "authority_admin", None)
        await platform.blacklist.add_ban(person_id, 90, "3 no-shows in 90 days (爽约3次)", admin)

        await page.goto(f"/doctors/{site.doctor_id}")
        await page.locator(f"button[data-slot='{site.slot_ids[0]}']").click()
        await page.locator("input[name=patient_id]").first.check()
        await page.locator("#confirm").click()
        error = page.locator("#error")
        await expect(error).to_contain_text(en.error("PATIENT_BLACKLISTED"))
        await expect(error).to_contain_text("3 no-shows in 90 days")
        await expect(error).to_contain_text(en("error.appeal_hint"))
        await shot(page, "booking-refused-banned-en")

        await error.get_by_role("link", name=en("standing.appeal")).click()
        await expect(page.locator("h1")).to_contain_text(en("standing.title"))
        await expect(page.locator(".alert")).to_contain_text("3 no-shows in 90 days")
        assert await axe_serious(page) == []
        await page.locator("#statement").fill("I was in hospital myself on those days.")
        await page.locator("#appeal-form button[type=submit]").click()
        await expect(page.locator("main")).to_contain_text(en("appeal.pending"))
        await shot(page, "standing-appeal-en")
    finally:
        await context.close()
