"""What the citizen pages read: a doctor with its names, each booking's 退号 deadline (the
hospital's policy, as ``cancel`` enforces it) and its refund, the account's inbox."""

from __future__ import annotations

from datetime import timedelta

import pytest

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from tests.fixtures.platforms import (
    SESSION_DAY,
    at_local,
    confirmed_booking,
    manual_clock,
    new_account,
    publish_clinic,
    session_of,
)


async def test_a_doctor_comes_with_its_department_hospital_and_hold_time(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform)
    doctor_id = await platform.citizen_views.doctor_of_session(await session_of(platform, slots[0]))
    profile = await platform.citizen_views.doctor(doctor_id)
    assert (profile.name, profile.department_name, profile.hospital_name) == (
        "王伟",
        "心内科",
        "测试医院",
    )
    assert profile.hold_minutes == 10
    name, hospital_id, hospital_name = await platform.citizen_views.department_hospital(
        profile.department_id
    )
    assert (name, hospital_id, hospital_name) == ("心内科", profile.hospital_id, "测试医院")
    with pytest.raises(GuahaoError) as missing:
        await platform.citizen_views.doctor("nobody")
    assert missing.value.code == "DOCTOR_NOT_FOUND"


async def test_the_cancel_deadline_shown_is_the_one_cancel_enforces(platform: Platform) -> None:
    slots = await publish_clinic(platform)
    account, booking_id, _ = await confirmed_booking(platform, slots[0])
    terms = (await platform.citizen_views.booking_terms(account, [booking_id]))[booking_id]
    deadline = at_local(SESSION_DAY - timedelta(days=1), 15)
    assert terms.cancel_deadline == deadline  # the day before at 15:00, the clinic's policy
    assert terms.refund_status is None

    manual_clock(platform).set(deadline)
    with pytest.raises(GuahaoError) as late:
        await platform.bookings.cancel(account_id=account, booking_id=booking_id)
    assert late.value.code == "CANCEL_DEADLINE_PASSED"

    manual_clock(platform).advance(minutes=-1)
    await platform.bookings.cancel(account_id=account, booking_id=booking_id)
    terms = (await platform.citizen_views.booking_terms(account, [booking_id]))[booking_id]
    assert (terms.refund_status, terms.refund_cents) == ("pending", 3000)


async def test_terms_are_only_for_the_accounts_own_bookings(platform: Platform) -> None:
    slots = await publish_clinic(platform)
    _, booking_id, _ = await confirmed_booking(platform, slots[0])
    stranger = await new_account(platform)
    assert await platform.citizen_views.booking_terms(stranger, [booking_id]) == {}


async def test_the_inbox_shows_what_the_outbox_told_the_account(platform: Platform) -> None:
    slots = await publish_clinic(platform)
    account, _, _ = await confirmed_booking(platform, slots[0])
    await platform.dispatcher.dispatch_pending()
    inbox = await platform.citizen_views.inbox(account)
    assert [m.topic for m in inbox] == ["booking.confirmed"]
    assert inbox[0].zh == "预约成功，请按时就诊。"
    assert inbox[0].en == "Your appointment is confirmed."
