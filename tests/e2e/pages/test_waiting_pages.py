"""Waiting for a unit in a real browser: joining the waitlist (候补) of a sold-out session for
a family member, the refusal of a second wait shown in the page, the place in line, leaving
it; entering a lottery (摇号) session's draw and withdrawing; the inbox's unread count in the
header, one message marked read, then all. Each new page is checked by axe-core and
photographed, phone-sized, in Chinese and English."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.async_api import Browser, Page, expect

from guahao.web.pages.messages import Translator
from tests.e2e.pages.support import Site, axe_serious, new_phone, sent_code, shot, sign_in
from tests.fixtures.platforms import (
    SESSION_DAY,
    at_local,
    confirmed_booking,
    hold,
    manual_clock,
    new_account,
    patient_named,
    resident_id,
    session_of,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

zh = Translator("zh")
en = Translator("en")


async def accessible(page: Page) -> None:
    assert await axe_serious(page) == []


async def add_family_member(
    page: Page, caplog: pytest.LogCaptureFixture, name: str, serial: int
) -> None:
    """The real-name form of a waitlist or lottery page (open while the account has no
    patient, a tap away after); saving it comes back to the same page. A relative is
    confirmed by the code sent to their phone, on my patients, then back to the page."""
    phone = new_phone()
    form = page.locator("#add-patient")
    if not await form.is_visible():  # folded away once the account has patients
        await page.locator("details:has(#add-patient) > summary").click()
    await form.locator("#p-name").fill(name)
    await form.locator("#p-relation").select_option("parent")
    await form.locator("#p-docno").fill(resident_id(serial))
    await form.locator("#p-phone").fill(phone)
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state()
    back = page.url
    await page.locator("label.choice", has_text=name).locator("a").click()
    waiting = page.locator("form.proof-code")
    await waiting.locator("input[name=code]").fill(sent_code(caplog, phone))
    await waiting.locator("button[type=submit]").click()
    await expect(page.locator("form.proof-code")).to_have_count(0)
    await page.goto(back)


async def account_of(site: Site, patient_name: str) -> str:
    found = await patient_named(site.platform, patient_name)
    assert found is not None
    return found.account_id


async def test_a_family_member_waits_for_a_sold_out_session_and_the_inbox_is_read(
    site: Site, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    platform = site.platform
    session_id = await session_of(platform, site.slot_ids[0])
    slots = [s for s in site.slot_ids if await session_of(platform, s) == session_id]
    context, page = await site.page(browser)
    try:
        await page.goto(f"/sign-in?next=/doctors/{site.doctor_id}")
        await sign_in(page, caplog, new_phone())
        wait_offer = page.locator(f"[data-wait='{session_id}']")
        await expect(wait_offer).to_be_hidden()  # units left: book, don't wait

        # others take every unit but two; this account books those two (two messages)
        for slot in slots:
            for _ in range(4 if slot not in slots[-2:] else 3):
                await hold(platform, await new_account(platform), slot)
        await page.reload()
        account_id = await _account_of_signed_in(page, site)
        for slot in slots[-2:]:
            await confirmed_booking(platform, slot, account_id=account_id)
        await platform.dispatcher.dispatch_pending()

        # the doctor's page offers the waitlist of the full session, live
        await expect(wait_offer).to_be_visible()
        await page.reload()  # the header counts the messages when a page is made
        await expect(page.locator("#unread-count")).to_have_text("2")
        await shot(page, "doctor-wait-offer-zh", scroll_to=f"#session-{session_id}")
        await wait_offer.get_by_role("link", name=zh("wait.join")).click()
        await expect(page.locator("h1")).to_have_text(zh("wait.join.title"))
        await add_family_member(page, caplog, "李秀英", 8_100_001)
        await expect(page.locator("h1")).to_have_text(zh("wait.join.title"))
        await page.get_by_label(re.compile("李秀英")).check()
        await accessible(page)
        await shot(page, "wait-join-zh")
        await page.locator("#join-wait").focus()  # keyboard only
        await page.keyboard.press("Enter")
        # the clinic takes payment online: the wait is prepaid (候补预付) before it is in line
        await expect(page.locator("h1")).to_have_text(zh("prepay.title"))
        await page.locator("#prepay-self").focus()
        await page.keyboard.press("Enter")

        wait = page.locator("li.wait").first
        await expect(page.locator("h1")).to_have_text(zh("me.waits"))
        await expect(wait).to_contain_text(zh("wait.status.waiting"))
        await expect(wait).to_contain_text(zh("wait.position", n=1))
        await expect(wait).to_contain_text("李秀英")
        await accessible(page)
        await shot(page, "my-waits-zh")

        # waiting twice for the same session is refused in the page, with its code
        await page.goto(f"/me/waits/new?session={session_id}")
        await page.get_by_label(re.compile("李秀英")).check()
        await page.locator("#join-wait").click()
        error = page.locator("#error")
        await expect(error).to_contain_text(zh.error("WAITLIST_ALREADY_WAITING"))
        await expect(error).to_contain_text("WAITLIST_ALREADY_WAITING")
        await shot(page, "wait-refused-zh", scroll_to="#error")

        # the inbox: one message read, then all; the header's count follows
        await page.locator("#inbox-link").click()
        await expect(page.locator("li.message.unread")).to_have_count(2)
        await accessible(page)
        await shot(page, "notifications-zh")
        await page.locator("li.message.unread").first.get_by_role("button").click()
        await expect(page.locator("li.message.unread")).to_have_count(1)
        await expect(page.locator("#unread-count")).to_have_text("1")
        await page.locator("#read-all button").click()
        await expect(page.locator("li.message.unread")).to_have_count(0)
        await expect(page.locator("#unread-count")).to_have_count(0)
        assert await platform.inbox.unread_count(account_id) == 0

        # the same pages in English
        await page.goto("/prefs?lang=en&next=/me/waits")
        await expect(page.locator("h1")).to_have_text(en("me.waits"))
        await shot(page, "my-waits-en")
        await page.goto(f"/me/waits/new?doctor={site.doctor_id}")
        await expect(page.locator("#w-from")).to_be_visible()
        await accessible(page)
        await shot(page, "wait-join-doctor-en")
        await page.goto("/me/notifications")
        await shot(page, "notifications-en")

        # leaving the wait from my waits
        await page.goto("/me/waits")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.locator("li.wait").first.get_by_role("button").click()
        await expect(page.locator("li.wait").first).to_contain_text(en("wait.status.cancelled"))
        assert [w.status for w in await platform.waitlist.waits(account_id)] == ["cancelled"]
    finally:
        await context.close()


async def _account_of_signed_in(page: Page, site: Site) -> str:
    """The signed-in account: it adds its first patient on the patients page."""
    back = page.url
    await page.goto("/me/patients")
    await page.locator("#p-name").fill("王建国")
    await page.locator("#p-relation").select_option("self")
    await page.locator("#p-docno").fill(resident_id(8_100_002))
    await page.locator("#add-patient button[type=submit]").click()
    await expect(page.locator("main")).to_contain_text("王建国")
    await page.goto(back)
    return await account_of(site, "王建国")


async def test_entering_a_lottery_sessions_draw_and_withdrawing(
    site: Site, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    platform = site.platform
    next_week = await session_of(platform, site.slot_ids[8])
    release = at_local(SESSION_DAY, 8)  # next Wednesday's session opens a week before
    manual_clock(platform).set(release - timedelta(hours=2))
    await platform.lottery.mark_lottery(next_week)  # entries open a day before, draw at 08:00

    context, page = await site.page(browser, lang="en")
    try:
        await page.goto(f"/sign-in?next=/doctors/{site.doctor_id}")
        await sign_in(page, caplog, new_phone())
        lottery_offer = page.locator(f"a[data-lottery='{next_week}']")
        await expect(page.locator(f"#session-{next_week} .lottery")).to_contain_text(
            en("lottery.tag")
        )
        await accessible(page)
        await shot(page, "doctor-lottery-en", scroll_to=f"#session-{next_week}")
        await lottery_offer.click()
        await expect(page.locator("h1")).to_have_text(en("lottery.enter.title"))
        await expect(page.locator("#draw-countdown")).to_have_text(re.compile(r"^(2:00:00|1:59)"))
        await add_family_member(page, caplog, "陈桂兰", 8_100_003)
        await page.get_by_label(re.compile("陈桂兰")).check()
        await accessible(page)
        await shot(page, "lottery-enter-en")
        await page.locator("#enter-lottery").click()

        entry = page.locator("li.entry").first
        await expect(entry).to_contain_text(en("lottery.status.entered"))
        await expect(entry).to_contain_text("陈桂兰")
        await accessible(page)
        await shot(page, "my-waits-lottery-en")

        # a second entry of the same person is refused in the page
        await page.goto(f"/me/lottery/new?session={next_week}")
        await page.get_by_label(re.compile("陈桂兰")).check()
        await page.locator("#enter-lottery").click()
        await expect(page.locator("#error")).to_contain_text(en.error("LOTTERY_ALREADY_ENTERED"))
        await page.goto("/prefs?lang=zh&next=" + f"/me/lottery/new%3Fsession%3D{next_week}")
        await expect(page.locator("h1")).to_have_text(zh("lottery.enter.title"))
        await shot(page, "lottery-enter-zh")

        await page.goto("/me/waits")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.locator("li.entry").first.get_by_role("button").click()
        await expect(page.locator("li.entry").first).to_contain_text(zh("lottery.status.withdrawn"))
        await shot(page, "my-waits-lottery-zh")
    finally:
        await context.close()
