"""The hospital console's department policy and 停诊 forms over HTTP, on both databases: a
department's split changed within the region's bounds (refused as a page with the code in
both languages otherwise), and a stop confirmed only on the bookings that were previewed."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import BookingRow, SessionRow, SlotRow
from tests.e2e.test_citizen_session import csrf_of
from tests.fixtures.platforms import SESSION_DAY, clinic, confirmed_booking, publish_clinic

PASSWORD = "console-pass-1"
LATER_DAY = SESSION_DAY + timedelta(days=14)  # not released at the clock's now


async def signed_in_desk(http: httpx.AsyncClient, platform: Platform) -> None:
    await platform.staff.create(
        username="desk", password=PASSWORD, role="hospital_staff", hospital_code="h1"
    )
    csrf = await csrf_of(http, "/console/sign-in")
    signed = await http.post(
        "/console/sign-in", data={"csrf": csrf, "username": "desk", "password": PASSWORD}
    )
    assert signed.status_code == 303, signed.text


def form_of(html: str, action_part: str) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of the first form whose action contains
    ``action_part``."""
    found = re.search(
        rf'<form method="post" action="([^"]*{action_part}[^"]*)"(.*?)</form>', html, re.S
    )
    assert found, action_part
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', found[2]))
    return found[1], hidden


async def online_quotas(platform: Platform) -> set[int]:
    async with platform.ports.sessions() as session:
        return set(
            (
                await session.scalars(
                    select(SlotRow.online_quota)
                    .join(SessionRow, SessionRow.id == SlotRow.session_id)
                    .where(SessionRow.date == LATER_DAY)
                )
            ).all()
        )


async def test_a_department_policy_is_changed_from_the_console_within_the_regions_bounds(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    spec = clinic(units=4)
    await publish_clinic(platform, spec)
    await platform.supply.publish_sessions(platform.supply.sessions_from_roster(spec, [LATER_DAY]))
    await signed_in_desk(http, platform)
    page = await http.get("/console/hospital/rules")
    assert page.status_code == 200
    action, hidden = form_of(page.text, "/policy")
    assert hidden["version"] == "0"

    no_token = await http.post(action, data={"online_percent": "50", "reason": "x", "version": "0"})
    assert (no_token.status_code, "CSRF_TOKEN_INVALID" in no_token.text) == (403, True)
    too_much = await http.post(
        action, data={**hidden, "online_percent": "95", "reason": "更多线上号"}
    )
    assert too_much.status_code == 422
    assert "DEPARTMENT_POLICY_OUT_OF_BOUNDS" in too_much.text
    assert "超出区域规则允许科室设置的范围" in too_much.text
    assert await online_quotas(platform) == {4}

    saved = await http.post(
        action, data={**hidden, "online_percent": "75", "days_ahead": "", "reason": "留现场号"}
    )
    assert saved.status_code == 303
    assert await online_quotas(platform) == {3}
    page = await http.get("/console/hospital/rules")
    assert "75%" in page.text
    assert "留现场号" in page.text  # the version's reason, with who and before/after
    stale = await http.post(action, data={**hidden, "online_percent": "60", "reason": "x"})
    assert stale.status_code == 409
    assert "DEPARTMENT_POLICY_CHANGED_MEANWHILE" in stale.text
    http.cookies.set("guahao_lang", "en")
    english = await http.post(action, data={**hidden, "release_at": "00:00", "reason": "x"})
    assert english.status_code == 422
    assert "outside what the region" in english.text.replace("&#39;", "'")
    assert await online_quotas(platform) == {3}


async def test_a_stop_confirmed_after_a_new_booking_shows_the_new_impact_and_asks_again(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    slots = await publish_clinic(platform)
    async with platform.ports.sessions() as session:
        session_id = await session.scalar(select(SlotRow.session_id).where(SlotRow.id == slots[0]))
    assert session_id is not None
    await signed_in_desk(http, platform)
    preview = await http.get(f"/console/hospital/sessions/{session_id}/stop")
    assert "将取消 0 个预约" in preview.text
    action, hidden = form_of(preview.text, "/stop")

    await confirmed_booking(platform, slots[0])  # another client books meanwhile
    asked_again = await http.post(action, data={**hidden, "reason": "医生外出会诊"})
    assert asked_again.status_code == 409
    assert "STOP_IMPACT_CHANGED" in asked_again.text
    assert "将取消 1 个预约" in asked_again.text
    async with platform.ports.sessions() as session:
        still = await session.get(SessionRow, session_id)
        assert still is not None
        assert still.status == "open"

    _, hidden = form_of(asked_again.text, "/stop")
    assert hidden["impact"] != form_of(preview.text, "/stop")[1]["impact"]
    stopped = await http.post(action, data={**hidden, "reason": "医生外出会诊"})
    assert stopped.status_code == 303
    async with platform.ports.sessions() as session:
        statuses = (
            await session.scalars(
                select(BookingRow.status).where(BookingRow.session_id == session_id)
            )
        ).all()
    assert list(statuses) == ["cancelled_by_hospital"]
