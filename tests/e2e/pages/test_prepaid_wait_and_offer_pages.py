"""Where prepaid waits, rebooking offers and reminders meet the pages, in a real browser: a
wait joined and prepaid from the pages, then served (the booking confirmed, no payment step);
a hospital's cancellation answered from the offers page, one offer accepted with the same
payment and one declined and refunded; the reminder's one-tap 退号 link cancelling before the
hospital's deadline and refused after it. Each new page is checked by axe-core and
photographed, phone-sized, in Chinese and English."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.hospitals import PaymentMode, Period
from guahao.platform.persistence.tables import (
    BookingRow,
    RebookingOfferRow,
    RefundRow,
    WaitPrepaymentRow,
)
from guahao.web.pages.messages import Translator
from tests.e2e.pages.conftest import open_site
from tests.e2e.pages.support import axe_serious, new_phone, shot, sign_in
from tests.fixtures.platforms import (
    SESSION_DAY,
    at_local,
    confirmed_booking,
    manual_clock,
    new_account,
    patient_named,
    resident_id,
)
from tests.integration.offer_scenarios import (
    THURSDAY,
    deliver,
    messages,
    one_slot_clinic,
    sell_out,
    session_on,
    slots_of,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

zh = Translator("zh")
en = Translator("en")
ONLINE = PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE
TWO_DAYS = ((SESSION_DAY.weekday(), Period.MORNING), (THURSDAY.weekday(), Period.MORNING))


async def accessible(page: Page) -> None:
    violations = await axe_serious(page)
    assert violations == [], violations


async def signed_in_with_patient(
    page: Page, platform: Platform, caplog: pytest.LogCaptureFixture, name: str, serial: int
) -> str:
    """Sign in by SMS on the pages and add the account's own patient; its account id."""
    await page.goto("/sign-in?next=/me/patients")
    await sign_in(page, caplog, new_phone())
    await page.locator("#p-name").fill(name)
    await page.locator("#p-relation").select_option("self")
    await page.locator("#p-docno").fill(resident_id(serial))
    await page.locator("#add-patient button[type=submit]").click()
    await expect(page.locator("main")).to_contain_text(name)
    found = await patient_named(platform, name)
    assert found is not None
    return found.account_id


async def settle(platform: Platform) -> None:
    """Deliver every event and pay out the refunds decided (what the workers do)."""
    await deliver(platform)
    for refund_no in await platform.bookings.pending_refunds():
        await platform.bookings.process_refund(refund_no)
    await platform.waitlist.prepayments.pay_out_due()
    await deliver(platform)


async def test_a_wait_prepaid_from_the_pages_is_served_with_no_payment_step(
    platform: Platform, live_server: str, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    site = await open_site(platform, live_server, one_slot_clinic(ONLINE))
    sess = await session_on(platform, SESSION_DAY)
    [(holder, held_booking)] = await sell_out(platform, sess.id)
    context, page = await site.page(browser)
    try:
        account_id = await signed_in_with_patient(page, platform, caplog, "赵淑芬", 8_300_001)
        await page.goto(f"/me/waits/new?session={sess.id}")
        await page.get_by_label(re.compile("赵淑芬")).check()
        await page.locator("#join-wait").click()

        # joining opens the prepayment: straight to its cashier, the deadline in local time
        await expect(page.locator("h1")).to_have_text(zh("prepay.title"))
        [wait] = await platform.waitlist.waits(account_id)
        assert wait.prepayment is not None
        assert page.url.endswith(f"/me/waits/{wait.id}/pay")
        await expect(page.locator("#pay-by")).to_have_text(wait.prepayment.pay_by)
        await expect(page.locator("#prepay")).to_contain_text("¥30.00")
        await expect(page.locator("#prepay")).to_contain_text(zh("prepay.how.unserved"))
        await accessible(page)
        await shot(page, "wait-prepay-zh")
        await page.goto(f"/prefs?lang=en&next=/me/waits/{wait.id}/pay")
        await expect(page.locator("h1")).to_have_text(en("prepay.title"))
        await shot(page, "wait-prepay-en")
        await page.locator("#prepay-self").click()

        # paid: in line, the money held, and leaving would refund it
        card = page.locator(f"#wait-{wait.id}")
        await expect(card).to_contain_text(en("prepay.status.paid"))
        await expect(card).to_contain_text(en("wait.position", n=1))
        await expect(card).to_contain_text(en("prepay.leave.note"))
        await accessible(page)
        await shot(page, "my-waits-prepaid-en", scroll_to=f"#wait-{wait.id}")

        # the unit comes back: the wait is served and confirmed with the money paid
        await platform.bookings.cancel(account_id=holder, booking_id=held_booking)
        await settle(platform)
        await page.goto("/prefs?lang=zh&next=/me/waits")
        await expect(card).to_contain_text(zh("prepay.status.applied"))
        await expect(card).to_contain_text(zh("prepay.applied.note", amount="30.00"))
        await shot(page, "my-waits-served-zh", scroll_to=f"#wait-{wait.id}")
        await card.get_by_role("link", name=zh("prepay.see_booking")).click()
        await expect(page).to_have_url(re.compile(r"/book/[^/]+/done$"))
        await expect(page.locator("main .status")).to_have_text(zh("status.confirmed"))
        await accessible(page)
        await shot(page, "wait-served-done-zh")
    finally:
        await context.close()
    async with platform.ports.sessions() as session:
        booking = await session.scalar(
            select(BookingRow).where(BookingRow.account_id == account_id)
        )
        prepaid = await session.get(WaitPrepaymentRow, wait.id)
    assert booking is not None
    assert prepaid is not None
    assert (booking.status, booking.paid) == ("confirmed", True)
    assert booking.payment_order_no == prepaid.order_no  # no second payment
    templates = {m.template for m in await messages(platform, account_id)}
    assert "booking.awaiting_payment" not in templates


async def test_rebooking_offers_are_accepted_and_declined_from_the_page(
    platform: Platform, live_server: str, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    site = await open_site(
        platform, live_server, one_slot_clinic(ONLINE, units=2, sessions=TWO_DAYS)
    )
    wednesday = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, wednesday.id)
    context, page = await site.page(browser)
    try:
        account_id = await signed_in_with_patient(page, platform, caplog, "孙立华", 8_300_002)
        # two family members booked on Wednesday; the hospital cancels both
        booked = [(await confirmed_booking(platform, slot, account_id=account_id))[1] for _ in "ab"]
        for booking_id in booked:
            await platform.bookings.cancel_by_hospital(booking_id, reason="HIS lost the patient")
        await settle(platform)

        # my page counts the open offers; the message that announced one links to them
        await page.goto("/me/")
        await expect(page.locator("#offer-count")).to_have_text(zh("offer.open_count", n=2))
        await page.locator("#inbox-link").click()
        await page.get_by_role("link", name=zh("offer.open_link")).first.click()
        await expect(page.locator("h1")).to_have_text(zh("offer.title"))
        offers = page.locator("li.offer[data-status=open]")
        await expect(offers).to_have_count(2)
        first, second = offers.nth(0), offers.nth(1)
        await expect(first.locator(".proposal").first).to_contain_text(zh("offer.same_doctor"))
        await expect(first.locator(".proposal").first).to_contain_text(THURSDAY.isoformat())
        await expect(first.locator(".answer-by")).to_contain_text(str(SESSION_DAY.year))
        await accessible(page)
        await shot(page, "offers-zh")
        first_id = (await first.get_attribute("id") or "").removeprefix("offer-")
        second_id = (await second.get_attribute("id") or "").removeprefix("offer-")

        # take Thursday's unit for the first: confirmed with the same payment
        await first.locator(".proposal button").first.click()
        accepted = page.locator(f"#offer-{first_id}")
        await expect(accepted).to_have_attribute("data-status", "accepted")
        await expect(accepted).to_contain_text(zh("offer.accepted.note"))
        # decline the second: refunded in full, no strike
        declined = page.locator(f"#offer-{second_id}")
        page.once("dialog", lambda dialog: dialog.accept())
        await declined.locator("form.decline button").click()
        await expect(declined).to_have_attribute("data-status", "declined")
        await expect(declined).to_contain_text(zh("offer.declined.note"))
        await settle(platform)
        await page.reload()
        await expect(declined).to_contain_text(zh("refund.succeeded"))
        await expect(page.locator("#open-offers")).to_have_count(0)
        await accessible(page)
        await shot(page, "offers-answered-zh")
        await page.goto("/prefs?lang=en&next=/me/offers")
        await expect(declined).to_contain_text(en("offer.declined.note"))
        await shot(page, "offers-answered-en")
        await accepted.get_by_role("link", name=en("offer.see_booking")).click()
        await expect(page.locator("main .status")).to_have_text(en("status.confirmed"))
    finally:
        await context.close()
    async with platform.ports.sessions() as session:
        offer = await session.get(RebookingOfferRow, first_id)
        assert offer is not None
        assert offer.accepted_booking_id is not None
        other = await session.get(RebookingOfferRow, second_id)
        assert other is not None
        assert {offer.booking_id, other.booking_id} == set(booked)
        rebooked = await session.get(BookingRow, offer.accepted_booking_id)
        cancelled = await session.get(BookingRow, offer.booking_id)
        refund = await session.scalar(
            select(RefundRow).where(RefundRow.booking_id == other.booking_id)
        )
    assert rebooked is not None
    assert cancelled is not None
    assert refund is not None
    assert (rebooked.status, rebooked.paid) == ("confirmed", True)
    assert rebooked.payment_order_no == cancelled.payment_order_no  # the same payment
    assert (refund.status, refund.amount_cents) == ("succeeded", 3000)


async def reminder_links(platform: Platform, account_id: str) -> list[str]:
    """The one-tap paths of the account's visit reminders, as the inbox shows them."""
    return sorted(
        "/one-tap/" + str(m.params["link"]).rsplit("/one-tap/", 1)[1]
        for m in await messages(platform, account_id)
        if m.template == "visit.reminder"
    )


async def test_the_one_tap_link_cancels_before_the_deadline_and_is_refused_after(
    platform: Platform, live_server: str, browser: Browser
) -> None:
    site = await open_site(platform, live_server, one_slot_clinic(ONLINE, units=2))
    [slot] = await slots_of(platform, (await session_on(platform, SESSION_DAY)).id)
    account_id = await new_account(platform)
    booked = [(await confirmed_booking(platform, slot, account_id=account_id))[1] for _ in "ab"]
    await deliver(platform)
    manual_clock(platform).set(at_local(SESSION_DAY - timedelta(days=1), 8, 0))
    await platform.reminders.send_due()
    await deliver(platform)
    first, second = await reminder_links(platform, account_id)

    context, page = await site.page(browser)
    try:
        # opening the link changes nothing; the button cancels, once
        await page.goto(first)
        await expect(page.locator("#one-tap")).to_have_attribute("data-outcome", "open")
        await expect(page.locator("#one-tap")).to_contain_text("测试医院")
        await expect(page.locator("#one-tap")).to_contain_text("2026-03-03 15:00")
        statuses = {b.id: b.status for b in await _bookings(platform, account_id)}
        assert set(statuses.values()) == {"confirmed"}
        await accessible(page)
        await shot(page, "one-tap-zh")
        await page.locator("#one-tap-cancel").click()
        await expect(page.locator("h1")).to_have_text(zh("one_tap.cancelled"))
        await accessible(page)
        await shot(page, "one-tap-done-zh")
        await page.goto(f"/prefs?mode=elder&next={first}")  # 长辈模式: a reminder's reader
        await expect(page.locator("#one-tap")).to_have_attribute("data-outcome", "used")
        await shot(page, "one-tap-used-elder-zh")
        await page.goto(f"/prefs?mode=standard&next={first}")

        # the other link, opened before the deadline and tapped after it: refused
        await page.goto(f"/prefs?lang=en&next={second}")
        await expect(page.locator("h1")).to_have_text(en("one_tap.open"))
        await shot(page, "one-tap-en")
        manual_clock(platform).set(at_local(SESSION_DAY - timedelta(days=1), 15, 1))
        await page.locator("#one-tap-cancel").click()
        await expect(page.locator("h1")).to_have_text(en("one_tap.past_deadline"))
        await expect(page.locator("#one-tap-code")).to_contain_text("CANCEL_DEADLINE_PASSED")
        await accessible(page)
        await shot(page, "one-tap-refused-en")
    finally:
        await context.close()
    statuses = {b.id: b.status for b in await _bookings(platform, account_id)}
    assert statuses == {booked[0]: "cancelled_by_patient", booked[1]: "confirmed"} or statuses == {
        booked[1]: "cancelled_by_patient",
        booked[0]: "confirmed",
    }


async def _bookings(platform: Platform, account_id: str) -> list[BookingRow]:
    async with platform.ports.sessions() as session:
        return list(
            await session.scalars(select(BookingRow).where(BookingRow.account_id == account_id))
        )
