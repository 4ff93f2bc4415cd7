"""Reminders before each visit (就诊提醒) with a manual clock, on both databases and a real Redis.

A confirmed visit on Wednesday 08:00 (Asia/Shanghai) is reminded on Tuesday at 08:00 (the day
before) and at 21:59 (two hours before would be 06:00, in the quiet hours: it goes out the
evening before instead); each reminder once, however many workers sweep; none for a cancelled
booking. Its one-tap link cancels before the hospital's deadline (15:00 the day before), once,
and is refused after it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import AccountRow, NotificationRow, VisitReminderRow
from guahao.platform.services.visit_reminders import InboxMessages
from guahao.platform.sms_sandbox import SmsNotifier
from tests.fixtures.platforms import SESSION_DAY, at_local, confirmed_booking
from tests.integration.offer_scenarios import (
    deliver,
    one_slot_clinic,
    publish_week,
    session_on,
    slots_of,
)

TUESDAY = SESSION_DAY - timedelta(days=1)


async def booked(platform):
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, sess.id)
    account, booking_id, _ = await confirmed_booking(platform, slot)
    await deliver(platform)  # booking.confirmed schedules its reminders
    return account, booking_id


async def reminders_told(platform, account):
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(NotificationRow)
                    .where(
                        NotificationRow.account_id == account,
                        NotificationRow.template == "visit.reminder",
                    )
                    .order_by(NotificationRow.created_at)
                )
            ).all()
        )


async def links(platform, account):
    return [m.params["link"].rsplit("/", 1)[-1] for m in await reminders_told(platform, account)]


def at(platform, instant):
    platform.ports.clock.set(instant)  # type: ignore[attr-defined]


async def test_each_reminder_is_sent_once_at_its_local_time_outside_quiet_hours(platform):
    account, booking_id = await booked(platform)
    at(platform, at_local(TUESDAY, 7, 59))
    assert await platform.reminders.send_due() == 0
    at(platform, at_local(TUESDAY, 8, 0))
    # Several workers sweeping at once send it once.
    assert sum(await asyncio.gather(*(platform.reminders.send_due() for _ in range(3)))) == 1
    await deliver(platform)
    await deliver(platform)
    [day_before] = await reminders_told(platform, account)
    assert day_before.params["hours_before"] == "24"
    assert f"{SESSION_DAY.isoformat()} 08:00" in day_before.params["zh"]
    assert f"{TUESDAY.isoformat()} 15:00" in day_before.params["zh"]  # the 退号 deadline
    assert "/one-tap/" in day_before.params["zh"]
    at(platform, at_local(TUESDAY, 21, 58))
    assert await platform.reminders.send_due() == 0
    at(platform, at_local(TUESDAY, 21, 59))
    assert await platform.reminders.send_due() == 1
    await deliver(platform)
    told = await reminders_told(platform, account)
    assert [m.params["hours_before"] for m in told] == ["24", "2"]
    at(platform, at_local(SESSION_DAY, 6, 0))
    assert await platform.reminders.send_due() == 0
    assert len(await reminders_told(platform, account)) == 2
    assert booking_id == told[0].params["booking_id"]


async def test_a_cancelled_booking_gets_no_reminder(platform):
    account, booking_id = await booked(platform)
    await platform.bookings.cancel(account_id=account, booking_id=booking_id)
    at(platform, at_local(TUESDAY, 22, 0))
    assert await platform.reminders.send_due() == 0
    await deliver(platform)
    assert await reminders_told(platform, account) == []
    async with platform.ports.sessions() as session:
        statuses = (await session.scalars(select(VisitReminderRow.status))).all()
    assert sorted(statuses) == ["skipped", "skipped"]


async def test_the_one_tap_link_cancels_once_before_the_deadline(platform):
    account, booking_id = await booked(platform)
    at(platform, at_local(TUESDAY, 8, 0))
    await platform.reminders.send_due()
    await deliver(platform)
    [token] = await links(platform, account)
    cancelled = await platform.reminders.cancel_by_link(token)
    assert (cancelled.id, cancelled.status.value) == (booking_id, "cancelled_by_patient")
    with pytest.raises(GuahaoError) as caught:
        await platform.reminders.cancel_by_link(token)
    assert caught.value.code == "ONE_TAP_LINK_USED"


async def test_the_one_tap_link_is_refused_after_the_deadline_and_when_forged(platform):
    account, booking_id = await booked(platform)
    at(platform, at_local(TUESDAY, 21, 59))
    assert await platform.reminders.send_due() == 2  # both are due by now
    await deliver(platform)
    tokens = await links(platform, account)
    with pytest.raises(GuahaoError) as caught:
        await platform.reminders.cancel_by_link(tokens[-1])
    assert caught.value.code == "CANCEL_DEADLINE_PASSED"
    reminder_id, _, signature = tokens[-1].partition(".")
    with pytest.raises(GuahaoError) as caught:
        await platform.reminders.cancel_by_link(f"{reminder_id}.{signature[::-1]}")
    assert caught.value.code == "ONE_TAP_LINK_INVALID"
    assert (await platform.bookings.get(booking_id)).status.value == "confirmed"


async def test_by_sms_each_reminder_reaches_the_phone_once_through_the_sandbox(platform):
    account, _ = await booked(platform)
    at(platform, at_local(TUESDAY, 8, 0))
    await platform.reminders.send_due()
    await deliver(platform)
    [message] = await reminders_told(platform, account)
    sms = SmsNotifier(platform.ports, platform.text_messages, InboxMessages(platform.ports))
    for _ in range(2):  # the outbox delivers at least once
        await sms.notify(account_id=account, template=message.template, params=message.params)
    async with platform.ports.sessions() as session:
        row = await session.get(AccountRow, account)
        phone = platform.ports.vault.open("phone", row.phone_enc)
    [text] = await platform.text_messages.sent(phone)
    assert text.text == message.params["zh"]
    assert len(await reminders_told(platform, account)) == 1  # the inbox copy once too
