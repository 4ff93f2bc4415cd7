"""The hospital console in Debian's chromium: a department's own split and release set on the
rules page (refused in place outside the region's bounds), and the sessions' counts following
a booking another client makes, live."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Request, expect

from guahao.bootstrap import Platform
from tests.e2e.pages.support import PHONE_VIEWPORT, Site, axe_serious, shot
from tests.e2e.pages.test_console_pages import PASSWORD, signed_in
from tests.fixtures.platforms import SESSION_DAY, confirmed_booking, session_of

pytestmark = pytest.mark.browser


async def desk(platform: Platform) -> None:
    await platform.staff.create(
        username="desk", password=PASSWORD, role="hospital_staff", hospital_code="h1"
    )


async def test_a_desk_sets_a_departments_split_and_release_within_the_regions_bounds(
    browser: Browser, site: Site
) -> None:
    await desk(site.platform)
    context, page = await signed_in(browser, site.base, "desk")
    try:
        await page.goto("/console/hospital/rules")
        card = page.locator("#dep-h ~ ul.cards .card").first
        await expect(card).to_contain_text("心内科")
        await expect(card).to_contain_text("随本院设置")
        await card.locator("summary").click()
        await card.locator("input[name=online_percent]").fill("95")
        await card.locator("input[name=reason]").fill("更多线上号")
        await card.locator("button[type=submit]").click()
        card = page.locator("#dep-h ~ ul.cards .card").first
        await expect(card.locator("#error code")).to_have_text("DEPARTMENT_POLICY_OUT_OF_BOUNDS")
        await expect(card).to_contain_text("超出区域规则允许科室设置的范围")
        await shot(page, "console-department-policy-refused-zh", scroll_to="#dep-h")

        await card.locator("input[name=online_percent]").fill("75")
        await card.locator("input[name=release_at]").fill("09:30")
        await card.locator("input[name=reason]").fill("留出现场号给老年患者")
        await card.locator("button[type=submit]").click()
        card = page.locator("#dep-h ~ ul.cards .card").first
        await expect(card).to_contain_text("75%")
        await expect(card).to_contain_text("第 1 版")
        await expect(page.locator("main")).to_contain_text("调整了 1 个未放号出诊")
        assert await axe_serious(page) == []
        await shot(page, "console-department-policy-zh", scroll_to="#dep-h")
    finally:
        await context.close()
    context, page = await signed_in(browser, site.base, "desk", lang="en", desk=True)
    try:
        await page.goto("/console/hospital/rules")
        await expect(page.locator("#dep-h")).to_have_text("Each department's split and release")
        await expect(page.locator("main")).to_contain_text("Unreleased sessions updated: 1")
        await shot(page, "console-department-policy-en-desk", scroll_to="#dep-h")
    finally:
        await context.close()


async def test_the_sessions_counts_follow_a_booking_made_by_another_client_live(
    browser: Browser, site: Site
) -> None:
    platform = site.platform
    await desk(platform)
    session_id = await session_of(platform, site.slot_ids[0])
    context, page = await signed_in(browser, site.base, "desk")
    try:
        await page.goto(f"/console/hospital/?from={SESSION_DAY}&days=1")
        row = page.locator(f"tr[data-session='{session_id}']")
        await expect(row.locator("[data-count=booked]")).to_have_text("0")
        free = int(await row.locator("[data-count=available]").inner_text())
        await expect(page.locator("#live-state.on")).to_have_count(1)

        await confirmed_booking(platform, site.slot_ids[0])  # a citizen elsewhere
        await platform.dispatcher.dispatch_pending()
        await expect(row.locator("[data-count=booked]")).to_have_text("1")
        await expect(row.locator("[data-count=available]")).to_have_text(str(free - 1))
        await page.locator("table.sessions").evaluate(
            "t => { t.parentElement.scrollLeft = 160; }"
        )  # the counts, not the names, in a phone's width
        await shot(page, "console-hospital-live-zh")

        await page.goto(f"/console/hospital/sessions/{session_id}")
        head = page.locator(f"dl[data-session='{session_id}']")
        await expect(head.locator("[data-count=booked]")).to_have_text("1")
        await confirmed_booking(platform, site.slot_ids[1])
        await platform.dispatcher.dispatch_pending()
        await expect(head.locator("[data-count=booked]")).to_have_text("2")

        # 停诊 previewed over two bookings; a third arrives before the confirmation
        await page.goto(f"/console/hospital/sessions/{session_id}/stop")
        await expect(page.locator(".impact")).to_contain_text("将取消 2 个预约")
        await confirmed_booking(platform, site.slot_ids[2])
        await page.locator("#reason").fill("医生临时外出会诊")
        await page.locator("form[action$='/stop'] button[type=submit]").click()
        await expect(page.locator("#error code")).to_have_text("STOP_IMPACT_CHANGED")
        await expect(page.locator(".impact")).to_contain_text("将取消 3 个预约")
        await expect(page.locator("#reason")).to_have_value("医生临时外出会诊")
        assert await axe_serious(page) == []
        await shot(page, "console-stop-changed-zh")
    finally:
        await context.close()


CHART_PAGE_BUDGET_BYTES = 250 * 1024
"""The chart pages' first load on a phone (HTML, CSS, scripts as transferred): the full
echarts.min.js alone was about 360 KB gzipped; the console's own bundle is about 190 KB."""


async def test_a_chart_pages_first_load_stays_within_its_budget_and_the_script_is_kept(
    browser: Browser, site: Site
) -> None:
    await desk(site.platform)
    context, _ = await signed_in(browser, site.base, "desk")
    cookies = await context.cookies()
    await context.close()
    fresh = await browser.new_context(viewport=PHONE_VIEWPORT)  # type: ignore[arg-type]
    try:
        await fresh.add_cookies(cookies)  # type: ignore[arg-type]
        page = await fresh.new_page()
        finished: list[Request] = []

        def keep(request: Request) -> None:
            finished.append(request)

        page.on("requestfinished", keep)
        await page.goto(f"{site.base}/console/hospital/reports", wait_until="load")
        await expect(page.locator(".chart[data-drawn=true] canvas").first).to_be_visible()
        sent = 0
        for request in finished:
            sizes = await request.sizes()
            sent += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        print(f"first load of /console/hospital/reports: {sent} bytes")
        assert 0 < sent <= CHART_PAGE_BUDGET_BYTES
        (script,) = [r for r in finished if "/console/assets/echarts-" in r.url]
        response = await script.response()
        assert response is not None
        headers = await response.all_headers()
        assert headers["content-encoding"] == "gzip"
        assert "immutable" in headers["cache-control"]
    finally:
        await fresh.close()
