"""A patient someone else has proven, added on the citizen pages: shown as waiting for the code
sent to the person's phone (masked), then made by entering it, in a real browser."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import update

from guahao.platform.persistence.tables import AccountRow, PatientRow
from guahao.platform.services.accounts import account_id_by_phone
from guahao.web.pages.messages import Translator
from tests.e2e.pages.support import Site, axe_serious, new_phone, sent_code, shot, sign_in
from tests.fixtures.platforms import hold, new_account, resident_id

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NUMBER = resident_id(737_373)


async def _proven_holder(site: Site) -> str:
    """An account whose 本人 is the person behind ``NUMBER``, name matched (as the region's
    verification port would have done); its phone."""
    platform = site.platform
    holder = await new_account(platform)
    own = await platform.accounts.add_patient(
        account_id=holder, name="李四", document_type="resident_id", document_number=NUMBER
    )
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(
            update(PatientRow).where(PatientRow.id == own.id).values(proof="name_matched")
        )
        row = await session.get(AccountRow, holder)
        assert row is not None
        return platform.ports.vault.open("phone", row.phone_enc)


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_a_pending_patient_shows_where_the_code_went_and_takes_it(
    site: Site, browser: Browser, caplog: pytest.LogCaptureFixture, lang: str
) -> None:
    t = Translator(lang)  # type: ignore[arg-type]
    holder_phone = await _proven_holder(site)
    masked = f"{holder_phone[:3]}****{holder_phone[-4:]}"
    context, page = await site.page(browser, lang=lang)
    try:
        await page.goto("/me/patients")
        await sign_in(page, caplog, new_phone())
        await page.locator("#p-name").fill("李四")
        await page.locator("#p-relation").select_option("parent")
        await page.locator("#p-docno").fill(NUMBER)
        await page.locator("#add-patient button[type=submit]").click()
        pending = page.locator("form.proof-code")
        await expect(pending).to_be_visible()
        await expect(page.locator("li.card", has=pending)).to_contain_text(masked)
        await expect(page.locator("li.card", has=pending)).not_to_contain_text(
            t("patient.standing")
        )
        assert await axe_serious(page) == []
        await shot(page, f"patient-proof-pending-{lang}")

        await pending.locator("input[name=code]").fill(sent_code(caplog, holder_phone))
        await pending.locator("button[type=submit]").click()
        await expect(page.locator("form.proof-code")).to_have_count(0)
        await expect(page.locator("li.card").first).to_contain_text(t("patient.standing"))
    finally:
        await context.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_a_declared_relative_is_confirmed_by_the_code_in_the_booking_journey(
    site: Site, browser: Browser, caplog: pytest.LogCaptureFixture, lang: str
) -> None:
    """A parent added during the patient step waits greyed out for the code sent to the phone
    given for them; entering it comes back to the step with the parent chosen."""
    t = Translator(lang)  # type: ignore[arg-type]
    platform = site.platform
    own_phone, mother_phone = new_phone(), new_phone()
    context, page = await site.page(browser, lang=lang)
    try:
        await page.goto("/me/patients")
        await sign_in(page, caplog, own_phone)
        async with platform.ports.sessions() as session:
            account = await account_id_by_phone(session, platform.ports.vault, own_phone)
        assert account is not None
        booking = await hold(platform, account, site.slot_ids[2 + (lang == "en")])
        await page.goto(f"/book/{booking.id}")
        await page.locator("#p-name").fill("王芳")
        await page.locator("#p-relation").select_option("parent")
        await page.locator("#p-docno").fill(resident_id(737_374 + (lang == "en")))
        await page.locator("#p-phone").fill(mother_phone)
        await page.locator("#add-patient button[type=submit]").click()
        waiting = page.locator("section.card", has=page.locator("form.proof-code"))
        await expect(waiting).to_contain_text(t("proof.unconfirmed"))
        await expect(waiting).to_contain_text(f"{mother_phone[:3]}****{mother_phone[-4:]}")
        await expect(page.locator("#confirm-form input[name=patient_id]")).to_be_disabled()
        assert await axe_serious(page) == []
        await shot(page, f"declared-relation-patient-step-{lang}", scroll_to="#confirm-form")
        # the same state and field on my patients (another tab: leaving the step gives the
        # held unit back)
        mine = await context.new_page()
        await mine.goto("/me/patients")
        listed = mine.locator("li.card", has=mine.locator("form.proof-code"))
        await expect(listed).to_contain_text(t("proof.unconfirmed"))
        assert await axe_serious(mine) == []
        await shot(mine, f"declared-relation-my-patients-{lang}")
        await mine.close()

        await waiting.locator("input[name=code]").fill(sent_code(caplog, mother_phone))
        await waiting.locator("form.proof-code button[type=submit]").click()
        await expect(page.locator("form.proof-code")).to_have_count(0)
        chosen = page.locator("#confirm-form input[name=patient_id]")
        await expect(chosen).to_be_enabled()
        await expect(chosen).to_be_checked()
        await page.goto("/me/patients")
        await expect(page.locator("li.card")).to_contain_text("王芳")
        await expect(page.locator("li.card .tag.warn")).to_have_count(0)
    finally:
        await context.close()
