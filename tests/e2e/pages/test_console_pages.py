"""The staff console in Debian's chromium: a hospital desk's sessions, a session stop seen
before it is confirmed, the authority's charts and appeals, and who may see and change what.

The region is the small constructed one of the figures' tests (two hospitals of one specialty,
every number hand-computed there); the pages are read as a phone and as a desk would, in
Chinese and in English, with screenshots kept in docs/screenshots/.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import (
    AuditRow,
    BookingRow,
    PatientRow,
    SessionRow,
    SuspicionSignalRow,
)
from guahao.platform.services.staff import StaffRole
from tests.e2e.pages.support import PHONE_VIEWPORT, Site, axe_serious, shot
from tests.fixtures.platforms import (
    at_local,
    bulk_accounts,
    confirmed_booking,
    manual_clock,
    new_account,
    new_patient,
    pay,
    resident_id,
    session_of,
)
from tests.fixtures.staff import hospital_id_of, staff_of
from tests.integration.test_supply_demand_figures import (
    DAY,
    book,
    build_region,
    chaoyang,
    session_on,
    slots_of,
)

pytestmark = pytest.mark.browser

PASSWORD = "console-pass-1"
DESK_VIEWPORT = {"width": 1280, "height": 900}
PERIOD = f"from={DAY - timedelta(days=2)}&to={DAY + timedelta(days=4)}"


async def region(platform: Platform) -> None:
    """The constructed region, next week's session of 朝阳医院 with one booking, and a staff
    member of each kind."""
    await build_region(platform)
    spec = chaoyang()
    await platform.supply.publish_sessions(
        platform.supply.sessions_from_roster(spec, [DAY + timedelta(days=7)])
    )
    (account,) = await bulk_accounts(platform, 1)
    slots = await slots_of(platform, "h1", DAY + timedelta(days=7))
    await book(platform, account, slots[0])
    await platform.search.reindex()  # the unmet-demand page's nearby alternatives
    clock = manual_clock(platform)
    for later in range(1, 4):  # the access measure on three mornings: a trend to draw
        clock.set(at_local(DAY + timedelta(days=later), 7))
        await platform.rollups.measure_access()
    for username, role, code in (
        ("desk", "hospital_staff", "h1"),
        ("desk2", "hospital_staff", "h2"),
        ("admin", "authority_admin", None),
        ("auditor", "authority_auditor", None),
    ):
        await platform.staff.create(
            username=username, password=PASSWORD, role=role, hospital_code=code
        )


async def signed_in(
    browser: Browser, base: str, username: str, *, lang: str = "zh", desk: bool = False
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(
        viewport=DESK_VIEWPORT if desk else PHONE_VIEWPORT,  # type: ignore[arg-type]
        locale="zh-CN" if lang == "zh" else "en-US",
        base_url=base,
    )
    page = await context.new_page()
    if lang != "zh":
        await page.goto("/prefs?lang=en&next=/console/sign-in")
    await page.goto("/console/")
    await page.locator("#username").fill(username)
    await page.locator("#password").fill(PASSWORD)
    await page.locator("form[action='/console/sign-in'] button[type=submit]").click()
    await page.wait_for_load_state()
    return context, page


async def audited(platform: Platform, action: str) -> int:
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(func.count()).select_from(AuditRow).where(AuditRow.action == action)
        )
    return int(found or 0)


async def person_of(platform: Platform, patient_id: str) -> str:
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(PatientRow.person_id).where(PatientRow.id == patient_id)
        )
    assert found is not None
    return found


async def seed_signal(platform: Platform, account_id: str) -> str:
    """One scalper-suspicion signal as the outbox detector writes it (seed data: producing
    one by booking patterns is the suspicion suite's subject, not the pages')."""
    signal = SuspicionSignalRow(
        id=new_id(),
        kind="cancel_rebook",
        subject_type="account",
        subject_id=account_id,
        dedupe_key=f"cancel_rebook:{account_id}",
        score=7,
        detail={"cancelled": 5, "rebooked": 5},
        detected_at=platform.ports.clock.now(),
    )
    async with platform.ports.sessions() as session, session.begin():
        session.add(signal)
    return signal.id


async def csrf_post(page: Page, path: str, fields: dict[str, str]) -> tuple[int, str]:
    """A form post as a crafted page would send it (with the browser's valid CSRF token)."""
    token = await page.locator("meta[name=csrf-token]").get_attribute("content")
    response = await page.request.post(path, form={"csrf": token or "", **fields})
    return response.status, await response.text()


async def test_a_hospital_desk_sees_live_counts_and_stops_a_session_after_seeing_its_impact(
    browser: Browser, platform: Platform, live_server: str
) -> None:
    await region(platform)
    context, page = await signed_in(browser, live_server, "desk")
    try:
        assert page.url.endswith("/console/hospital/")
        await page.goto(f"/console/hospital/?from={DAY - timedelta(days=2)}&days=14")
        table = page.locator("table.sessions")
        await expect(table).to_contain_text("心内科")
        # this week's session: 4 segments of 4 units, 3 of each online; 3 booked, one of
        # them cancelled, the hold long lapsed; one add-on unit; over, so nothing is free
        row = table.locator("tbody tr").first
        await expect(row.locator("td.num")).to_have_text(["12", "4", "0", "2", "0", "0", "1"])
        assert await axe_serious(page) == []
        await shot(page, "console-hospital-zh")

        before = await audited(platform, "console.session_patients.read")
        await row.locator("a").click()
        await expect(page.locator("h1")).to_contain_text("心内科")
        await expect(page.locator("main table")).to_contain_text("赵六")  # the add-on patient
        assert await audited(platform, "console.session_patients.read") == before + 1
        await shot(page, "console-session-zh")

        next_week = await session_on(platform, "h1", DAY + timedelta(days=7))
        await page.goto(f"/console/hospital/sessions/{next_week}/stop")
        impact = page.locator(".impact")
        await expect(impact).to_contain_text("将取消 1 个预约")
        await expect(impact).to_contain_text("将通知 1 位就诊人")
        assert await axe_serious(page) == []
        await shot(page, "console-stop-zh")
        await page.locator("#reason").fill("医生临时外出会诊")
        await page.locator("form[action$='/stop'] button[type=submit]").click()
        await expect(page.locator(".counts")).to_contain_text("已停诊")
        await expect(page.locator(".counts")).to_contain_text("可预约0")
        async with platform.ports.sessions() as session:
            stopped = await session.get(SessionRow, next_week)
            statuses = (
                await session.scalars(
                    select(BookingRow.status).where(BookingRow.session_id == next_week)
                )
            ).all()
        assert stopped is not None
        assert stopped.status == "stopped"
        assert list(statuses) == ["cancelled_by_hospital"]
        assert await audited(platform, "console.session.stop") == 1

        await page.goto("/console/hospital/reports?" + PERIOD)
        await expect(page.locator(".chart[data-drawn=true] canvas").first).to_be_visible()
        await expect(page.locator("main")).to_contain_text("朝阳区")
        await expect(page.locator("main")).not_to_contain_text("海淀")
        await shot(page, "console-hospital-reports-zh")
    finally:
        await context.close()
    context, page = await signed_in(browser, live_server, "desk", lang="en", desk=True)
    try:
        await page.goto(f"/console/hospital/?from={DAY - timedelta(days=2)}&days=14")
        await expect(page.locator("table.sessions")).to_contain_text("Online")
        await shot(page, "console-hospital-en-desk")
    finally:
        await context.close()


async def test_hospital_staff_see_and_change_only_their_own_hospital(
    browser: Browser, platform: Platform, live_server: str
) -> None:
    await region(platform)
    theirs = await session_on(platform, "h2")
    context, page = await signed_in(browser, live_server, "desk")
    try:
        response = await page.goto(f"/console/hospital/sessions/{theirs}")
        assert response is not None
        assert response.status == 403
        await expect(page.locator("#error code")).to_have_text("HOSPITAL_SCOPE_DENIED")
        await expect(page.locator("main")).not_to_contain_text("海淀")
        status, _ = await csrf_post(
            page, f"/console/hospital/sessions/{theirs}/stop", {"reason": "x"}
        )
        assert status == 403
        response = await page.goto("/console/authority/")
        assert response is not None
        assert response.status == 403
        await expect(page.locator("#error code")).to_have_text("STAFF_ROLE_REQUIRED")

        await page.goto("/console/hospital/rules")  # their own rules, within the region's
        await page.locator("input[name='add_on_per_session']").fill("3")
        await page.locator("#rules-reason").fill("专家门诊加号需求大")
        await page.locator("form[action='/console/hospital/rules'] button").click()
        await expect(page.locator("main .list")).to_contain_text("专家门诊加号需求大")
        assert await axe_serious(page) == []
        await shot(page, "console-hospital-rules-zh")
    finally:
        await context.close()
    async with platform.ports.sessions() as session:
        untouched = await session.get(SessionRow, theirs)
    assert untouched is not None
    assert untouched.status != "stopped"
    h1_rules = await platform.rules.for_hospital(await hospital_id_of(platform, "h1"))
    h2_rules = await platform.rules.for_hospital(await hospital_id_of(platform, "h2"))
    assert (h1_rules.add_on_per_session, h2_rules.add_on_per_session) == (
        3,
        (await platform.rules.region()).add_on_per_session,
    )


async def test_the_authority_sees_supply_and_demand_and_an_admin_decides_an_appeal(
    browser: Browser, platform: Platform, live_server: str
) -> None:
    await region(platform)
    admin = await staff_of(platform, "admin", StaffRole.AUTHORITY_ADMIN.value, None)
    (account,) = await bulk_accounts(platform, 1)
    patient_id = await new_patient(platform, account, name="孙八")
    await platform.blacklist.add_ban(
        await person_of(platform, patient_id), 30, "倒号证据确凿", admin
    )
    await platform.blacklist.file_appeal(account, patient_id, None, "本人从未转卖号源")

    context, page = await signed_in(browser, live_server, "admin", desk=True)
    try:
        assert page.url.endswith("/console/authority/")
        await page.goto("/console/authority/?" + PERIOD)
        await expect(page.locator(".chart[data-drawn=true] canvas")).to_have_count(2)
        await expect(page.locator("main table").first).to_contain_text("海淀区")
        assert await axe_serious(page) == []
        await shot(page, "console-authority-zh-desk")
        await shot(page, "console-access-zh-desk", scroll_to="#access-h")
        export = await page.request.get("/console/exports/supply-demand?format=csv&" + PERIOD)
        assert export.status == 200
        assert "海淀区" in (await export.body()).decode("utf-8-sig")
        await page.goto("/console/authority/unmet?" + PERIOD)
        await expect(page.locator("main")).to_contain_text("海淀医院")
        await expect(page.locator("main .list")).to_contain_text("朝阳医院")  # nearby, free
        await shot(page, "console-unmet-zh-desk")
        await page.goto(f"/console/authority/hospitals?{PERIOD}&month=2026-03")
        await expect(page.locator("main table").first).to_contain_text("海淀医院")
        await shot(page, "console-rankings-zh-desk")

        before = await audited(platform, "appeal.decide")
        await page.goto("/console/authority/appeals")
        await expect(page.locator("main")).to_contain_text("本人从未转卖号源")
        assert await axe_serious(page) == []
        await page.locator("form.decide input[name=reason]").fill("证据不足，解除限制")
        await page.locator("form.decide button[value=yes]").click()
        await expect(page.locator("main")).to_contain_text("没有申诉")
        appeals = await platform.blacklist.list_appeals(admin, status="granted")
        assert [a.decision_reason for a in appeals] == ["证据不足，解除限制"]
        assert await audited(platform, "appeal.decide") >= before
    finally:
        await context.close()
    context, page = await signed_in(browser, live_server, "admin", lang="en")
    try:
        await page.goto("/console/authority/?" + PERIOD)
        await expect(page.locator(".chart[data-drawn=true] canvas")).to_have_count(2)
        await expect(page.locator("h1")).to_have_text("Supply and demand across the region")
        await shot(page, "console-authority-en")
        await page.goto("/console/authority/connectors")
        await page.goto("/console/authority/rules")
        await expect(page.locator("h1")).to_contain_text("Region rules")
    finally:
        await context.close()


async def test_an_auditor_reads_everything_and_changes_nothing(
    browser: Browser, platform: Platform, live_server: str
) -> None:
    await region(platform)
    admin = await staff_of(platform, "admin", StaffRole.AUTHORITY_ADMIN.value, None)
    (account,) = await bulk_accounts(platform, 1)
    patient_id = await new_patient(platform, account, name="周九")
    await platform.blacklist.add_ban(await person_of(platform, patient_id), 30, "倒号", admin)
    appeal = await platform.blacklist.file_appeal(account, patient_id, None, "误判")
    signal_id = await seed_signal(platform, account)

    context, page = await signed_in(browser, live_server, "auditor")
    try:
        await page.goto("/console/authority/appeals")
        await expect(page.locator("main")).to_contain_text("误判")
        await expect(page.locator("main form")).to_have_count(0)
        await shot(page, "console-appeals-auditor-zh")
        status, body = await csrf_post(
            page,
            f"/console/authority/appeals/{appeal.id}/decision",
            {"grant": "yes", "reason": "x"},
        )
        assert status == 403
        assert "STAFF_ROLE_REQUIRED" in body
        await page.goto("/console/authority/signals")
        await expect(page.locator("main table")).to_contain_text("cancel_rebook")
        await expect(page.locator("main form")).to_have_count(0)
        status, _ = await csrf_post(
            page, f"/console/authority/signals/{signal_id}/review", {"note": "x"}
        )
        assert status == 403
        for path in ("/console/authority/signals", "/console/authority/bans"):
            response = await page.goto(path)
            assert response is not None
            assert response.status == 200
        response = await page.goto("/console/hospital/")
        assert response is not None
        assert response.status == 403
    finally:
        await context.close()
    pending = await platform.blacklist.list_appeals(admin, status="pending")
    assert [a.id for a in pending] == [appeal.id]
    context, page = await signed_in(browser, live_server, "admin")
    try:
        await page.goto("/console/authority/signals")
        await page.locator(f"#note-{signal_id}").fill("已转公安核查")
        await page.locator("main form button").click()
        await expect(page.locator("main table")).to_contain_text("没有待复核的线索")
    finally:
        await context.close()
    (reviewed,) = await platform.suspicion.list(admin, reviewed=True)
    assert (reviewed.id, reviewed.review_note) == (signal_id, "已转公安核查")


async def test_the_desk_checks_in_adds_a_unit_marks_a_lottery_and_files_a_patient(
    browser: Browser, platform: Platform, site: Site
) -> None:
    _, booking_id, _ = await confirmed_booking(platform, site.slot_ids[0])
    session_id = await session_of(platform, site.slot_ids[0])
    arriving = await new_account(platform)
    card = resident_id(4242)
    patient = await platform.accounts.add_patient(
        account_id=arriving,
        name="郑十一",
        document_type="resident_id",
        document_number=card,
        relation="self",
    )
    held = await platform.bookings.hold(
        account_id=arriving, slot_id=site.slot_ids[1], idempotency_key="walk-in"
    )
    await platform.bookings.choose_patient(
        account_id=arriving, booking_id=held.id, patient_id=patient.id
    )
    _, order = await platform.bookings.submit(
        account_id=arriving, booking_id=held.id, channel="self_pay"
    )
    assert order is not None
    await pay(platform, order.order_no, "self_pay")
    account = await new_account(platform)
    walk_in = await new_patient(platform, account, name="吴十")
    await platform.filings.request(
        account_id=account, patient_id=walk_in, hospital_id=await hospital_id_of(platform, "h1")
    )
    await platform.staff.create(
        username="desk", password=PASSWORD, role="hospital_staff", hospital_code="h1"
    )
    context, page = await signed_in(browser, site.base, "desk")
    try:
        await page.goto(f"/console/hospital/sessions/{session_id}")
        await page.get_by_role("button", name="签到 张三").click()
        await expect(page.locator("main table")).to_contain_text("已签到")
        await page.locator("#patient_id").fill(walk_in)
        await page.locator("#add-on-reason").fill("术后复查")
        await page.locator("form[action$='/add-on'] button").click()
        await expect(page.locator("main table")).to_contain_text("吴十")
        await expect(page.locator(".counts")).to_contain_text("加号1")
        async with platform.ports.sessions() as session:
            checked = await session.get(BookingRow, booking_id)
            next_week = await session.scalar(
                select(SessionRow.id).where(SessionRow.id != session_id).order_by(SessionRow.date)
            )
        assert checked is not None
        assert checked.status == "checked_in"
        assert next_week is not None

        await page.goto(f"/console/hospital/sessions/{next_week}")
        await page.locator("form[action$='/lottery'] button").click()
        await expect(page.locator(".counts")).to_contain_text("摇号")

        await page.goto("/console/hospital/filings")
        await expect(page.locator("main .list").first).to_contain_text("吴十")
        assert await axe_serious(page) == []
        requested = page.locator("main .list").first
        await requested.locator("input[name=his_patient_id]").fill("MZ-0042")
        await requested.locator("button").click()
        await expect(page.locator("main .list").first).to_contain_text("没有待建档的就诊人")
        arrival = page.locator("form.arrival")
        await expect(arrival).to_have_count(1)  # 郑十一; the checked-in patient is not waiting
        await expect(page.locator("main")).to_contain_text("郑十一")
        await shot(page, "console-filings-zh", scroll_to="#arrivals-h")
        await arrival.locator("input[name=document_number]").fill(resident_id(4243))
        await arrival.locator("input[name=his_patient_id]").fill("MZ-0043")
        await arrival.locator("button").click()
        await expect(page.locator("#error code")).to_have_text("VALIDATION_FAILED")
        await page.goto("/console/hospital/filings")
        await arrival.locator("input[name=document_number]").fill(card)
        await arrival.locator("input[name=his_patient_id]").fill("MZ-0043")
        await arrival.locator("button").click()
        await expect(page.locator("form.arrival")).to_have_count(0)
    finally:
        await context.close()
    actions = {
        "console.booking.check_in",
        "console.session.lottery",
        "console.filing.result",
        "console.filing_queue.read",
        "console.unfiled_arrivals.read",
        "console.filing.on_arrival",
    }
    assert {a for a in actions if await audited(platform, a) == 0} == set()
