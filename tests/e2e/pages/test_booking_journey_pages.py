"""The citizen's main journey in a real browser: search → doctor → hold → add a patient →
pay → confirmed → 退号, in Chinese, in English and in elderly mode (长辈模式).

Along the way each key page is checked by axe-core (no serious or critical WCAG 2.1 AA
violation) and photographed, phone-sized, into docs/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from guahao.web.pages.messages import Translator
from tests.e2e.pages.support import Site, axe_serious, new_phone, sent_code, shot, sign_in
from tests.fixtures.platforms import resident_id

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_serials = iter(range(4_000_000, 5_000_000, 97))


async def accessible(page: Page) -> None:
    violations = await axe_serious(page)
    assert violations == [], violations


@pytest.mark.parametrize(
    ("lang", "elder"),
    [
        pytest.param("zh", False, id="chinese"),
        pytest.param("en", False, id="english"),
        pytest.param("zh", True, id="elderly-mode"),
    ],
)
async def test_search_hold_add_a_patient_pay_confirmed_then_cancel(
    site: Site,
    browser: Browser,
    caplog: pytest.LogCaptureFixture,
    lang: str,
    elder: bool,
) -> None:
    t = Translator("en" if lang == "en" else "zh")
    name = f"{'elder' if elder else lang}"
    context, page = await site.page(browser, lang=lang, elder=elder)
    try:
        await page.goto("/")
        await expect(page.locator("h1")).to_have_text(t("site.tagline"))
        mode = re.compile(r"\belder\b" if elder else r"\bstandard\b")
        await expect(page.locator("html")).to_have_class(mode)
        await expect(page.locator("html")).to_have_attribute(
            "lang", "en" if lang == "en" else "zh-CN"
        )
        await shot(page, f"home-{name}")

        # search, with facets
        await page.locator("#q").fill("王伟")
        await page.locator("form[role=search] button[type=submit]").click()
        await expect(page.locator("h1")).to_contain_text(t("search.title"))
        await expect(page.locator(".facets summary")).to_have_text(t("search.filters"))
        await accessible(page)
        await shot(page, f"search-{name}")

        # the doctor's next 14 days: this Wednesday is open, 4 units a segment
        await page.locator("a.item[href^='/doctors/']").first.click()
        await expect(page.locator("h1")).to_contain_text("王伟")
        first_slot = page.locator(f"button[data-slot='{site.slot_ids[0]}']")
        await expect(first_slot).to_be_enabled()
        await expect(first_slot).to_contain_text(t("doctor.left", n=4))
        await accessible(page)
        await shot(page, f"doctor-{name}")

        # choosing a unit asks to sign in first, then comes back to the doctor
        await first_slot.click()
        await expect(page.locator("h1")).to_have_text(t("sign_in.title"))
        await shot(page, f"sign-in-{name}")
        await sign_in(page, caplog, new_phone())
        await expect(page).to_have_url(re.compile(f"/doctors/{site.doctor_id}$"))

        # hold: the unit is ours, the remaining hold time counts down
        await page.locator(f"button[data-slot='{site.slot_ids[0]}']").click()
        await expect(page.locator("#hold h1")).to_have_text(t("flow.held"))
        countdown = page.locator("#hold-countdown")
        await expect(countdown).to_have_text(re.compile(r"^(10:00|9:[0-5]\d)$"))
        first = await countdown.text_content()
        await expect(countdown).not_to_have_text(first or "")

        # add the patient with the real-name form (a parent: booking for family is normal)
        form = page.locator("#add-patient")
        await form.locator("#p-name").fill("李秀英")
        await form.locator("#p-relation").select_option("parent")
        await form.locator("#p-docno").fill(resident_id(next(_serials)))
        relative_phone = new_phone()
        await form.locator("#p-phone").fill(relative_phone)
        await accessible(page)
        await shot(page, f"booking-patient-{name}")
        await form.locator("button[type=submit]").click()
        # a relative is booked for once the code sent to their phone confirms the relation
        waiting = page.locator("form.proof-code")
        await waiting.locator("input[name=code]").fill(sent_code(caplog, relative_phone))
        await waiting.locator("button[type=submit]").click()
        chosen = page.locator("input[name=patient_id]:checked")
        await expect(chosen).to_have_count(1)
        await expect(page.locator("#confirm-form")).to_contain_text("李秀英")

        # pay at the sandbox cashier: the order shows when it expires
        await page.locator("#confirm").click()
        await expect(page.locator("h1")).to_have_text(t("flow.pay.title"))
        await expect(page.locator(".cashier")).to_contain_text("30.00")
        await accessible(page)
        await shot(page, f"booking-pay-{name}")
        await page.locator("#pay-form button[value=self_pay]").click()

        # done: confirmed, with the 退号 deadline
        await expect(page.locator("h1")).to_have_text(t("flow.done"))
        await expect(page.locator(".status")).to_have_text(t("status.confirmed"))
        await accessible(page)
        await shot(page, f"booking-done-{name}")

        # my bookings: 退号 before the deadline, the refund is shown
        await page.goto("/me/bookings")
        booking = page.locator("li.booking").first
        await expect(booking).to_contain_text(t("status.confirmed"))
        await expect(booking).to_contain_text(t("booking.cancel_by", at="03-03 15:00"))
        await accessible(page)
        await shot(page, f"my-bookings-{name}")
        page.once("dialog", lambda dialog: dialog.accept())
        await booking.locator("button[type=submit]").click()
        booking = page.locator("li.booking").first
        await expect(booking).to_contain_text(t("status.cancelled_by_patient"))
        await expect(booking).to_contain_text(t("booking.refund", status=t("refund.pending")))
        await shot(page, f"my-bookings-cancelled-{name}")
    finally:
        await context.close()
