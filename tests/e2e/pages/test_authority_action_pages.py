"""The authority's action pages in Debian's chromium: an administrator finds a person, strikes a
strike out and lifts a ban (each after a page saying what it will do), bans by hand, changes a
region rule (the refusal shown beside the form, then the diff, then the new version), and an
auditor reads the audit log and its hash chain. Screenshots, phone and desk, Chinese and
English, go to docs/screenshots/.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from guahao.bootstrap import Platform
from tests.e2e.pages.support import axe_serious, shot
from tests.e2e.pages.test_console_pages import signed_in
from tests.e2e.test_authority_console_pages import ban_in_force, banned_person, staff, strike_ids
from tests.fixtures.platforms import new_account
from tests.integration.test_blacklist import Person, hospitals

pytestmark = pytest.mark.browser


async def test_an_admin_strikes_out_a_strike_lifts_the_ban_and_bans_by_hand_each_confirmed(
    browser: Browser, platform: Platform, live_server: str
) -> None:
    person, person_id = await banned_person(platform)
    ((account, patient),) = person.patients.items()
    await platform.blacklist.file_appeal(account, patient, None, "第三次当天急诊住院，无法到诊")
    await staff(platform)
    context, page = await signed_in(browser, live_server, "admin")
    try:
        await page.goto("/console/authority/bans")
        await expect(page.locator("table.bans tbody tr")).to_have_count(1)
        assert await axe_serious(page) == []
        await shot(page, "console-bans-zh")
        await page.locator("#find-docno").fill(person.document)
        await page.locator("form.find-person button").click()
        await expect(page.locator("ul.strikes li.card")).to_have_count(3)
        await expect(page.locator("ul.bans")).to_contain_text("第三次当天急诊住院")  # its appeal
        await expect(page.locator("main")).not_to_contain_text(person.document)
        assert await axe_serious(page) == []
        await shot(page, "console-person-zh")
        await shot(page, "console-strikes-zh", scroll_to="#strikes-h")

        first = page.locator("ul.strikes li.card").first
        await first.locator("input[name=reason]").fill("医院误报爽约")
        await first.locator("button").click()
        await expect(page.locator(".impact")).to_contain_text("撤销违约不会解除限制")
        assert await axe_serious(page) == []
        await shot(page, "console-strike-confirm-zh")
        await page.locator("form.confirm button").click()
        await expect(page.locator("ul.strikes li.card")).to_have_count(2)

        await page.locator("form.lift input[name=reason]").fill("复核后解除")
        await page.locator("form.lift button").click()
        await expect(page.locator(".impact")).to_contain_text("此人立即可以重新预约")
        await page.locator("form.confirm button").click()
        await expect(page.locator("ul.bans")).to_contain_text("复核后解除")

        await page.locator("#ban-days").fill("60")
        await page.locator("#ban-reason").fill("倒号证据确凿")
        await page.locator("form.add-ban button").click()
        await expect(page.locator(".impact")).to_contain_text("60 天内")
        await shot(page, "console-ban-confirm-zh")
        await page.locator("form.confirm button").click()
        await expect(page.locator("p.alert")).to_contain_text("限制预约至")
    finally:
        await context.close()
    assert len(await strike_ids(platform, person_id)) == 2
    manual = await ban_in_force(platform, person_id)
    assert manual is not None
    assert manual.startswith("manual:")
    context, page = await signed_in(browser, live_server, "admin", lang="en", desk=True)
    try:
        await page.goto("/console/authority/bans?show=all")
        await expect(page.locator("table.bans tbody tr")).to_have_count(2)
        await expect(page.locator("h1")).to_have_text("Blacklist (every entry)")
        await shot(page, "console-bans-en-desk")
        await page.goto(f"/console/authority/persons/{person_id}")
        await expect(page.locator("ul.bans")).to_contain_text("Lifted")
        await shot(page, "console-person-en-desk")
    finally:
        await context.close()


async def test_an_admin_changes_a_region_rule_seeing_the_refusal_inline_then_the_diff(
    browser: Browser, platform: Platform, live_server: str
) -> None:
    await hospitals(platform, "h1")
    await staff(platform)
    context, page = await signed_in(browser, live_server, "admin")
    try:
        await page.goto("/console/authority/rules")
        await page.locator("#rules-changes").fill("limits.per_patient_day = 0")
        await page.locator("#rules-reason").fill("节假日加强限号")
        await page.locator("form.rules-change button").click()
        await expect(page.locator("#error code")).to_have_text("RULES_INVALID")
        await expect(page.locator("#rules-changes")).to_have_value("limits.per_patient_day = 0")
        assert await axe_serious(page) == []
        await shot(page, "console-rules-error-zh", scroll_to="#change-h")
        await page.locator("#rules-changes").fill(
            "limits.per_patient_day = 2\nadd_on_per_session = 4"
        )
        await page.locator("form.rules-change button").click()
        await expect(page.locator("table.diff")).to_contain_text("limits.per_patient_day")
        assert await axe_serious(page) == []
        await shot(page, "console-rules-confirm-zh")
        await page.locator("form.confirm button").click()
        await expect(page.locator("main [role=status]")).to_contain_text("已保存为第 1 版")
        await expect(page.locator("ul.versions table.diff")).to_contain_text("2")
    finally:
        await context.close()
    platform.rules.forget()
    saved = await platform.rules.region()
    assert (saved.limits.per_patient_day, saved.add_on_per_session) == (2, 4)
    context, page = await signed_in(browser, live_server, "admin", lang="en", desk=True)
    try:
        await page.goto("/console/authority/rules")
        await expect(page.locator("ul.versions")).to_contain_text("Before")
        await shot(page, "console-rules-en-desk", scroll_to="#change-h")
    finally:
        await context.close()


async def test_an_auditor_filters_the_audit_log_and_sees_the_chain_verified(
    browser: Browser, platform: Platform, live_server: str
) -> None:
    await hospitals(platform, "h1")
    await staff(platform)
    person = Person()
    await person.of(platform, await new_account(platform))
    person_id = await person.person_id(platform)
    context, page = await signed_in(browser, live_server, "auditor", desk=True)
    try:
        await page.goto(f"/console/authority/persons/{person_id}")  # an audited read
        await expect(page.locator("main form")).to_have_count(0)
        await page.goto("/console/authority/audit")
        await page.locator("#f-actor").fill("auditor")
        await page.locator("form.filters button").click()
        await expect(page.locator("table.audit tbody tr")).to_have_count(1)
        await expect(page.locator("table.audit")).to_contain_text("person.read")
        await page.goto("/console/authority/audit")
        assert await axe_serious(page) == []
        await shot(page, "console-audit-zh-desk")
        async with page.expect_download() as download:
            await page.locator(".exports a").first.click()
        assert (await download.value).suggested_filename.startswith("audit-log-")
        await page.locator("a.chain-link").click()
        await expect(page.locator("section.chain")).to_contain_text("哈希链完整")
    finally:
        await context.close()
    context, page = await signed_in(browser, live_server, "auditor", lang="en")
    try:
        await page.goto("/console/authority/audit/chain")
        await expect(page.locator("section.chain h2")).to_have_text("The chain is intact")
        assert await axe_serious(page) == []
        await shot(page, "console-audit-chain-en")
        await page.goto("/console/authority/audit")
        await shot(page, "console-audit-en")
    finally:
        await context.close()
