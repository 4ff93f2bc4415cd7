"""Reading the inbox (``Inbox``): the unread count, one message marked read, all marked read,
the first reading time kept, another account's message unknown. On both databases."""

from __future__ import annotations

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import NotificationRow
from tests.fixtures.platforms import (
    assert_refused,
    confirmed_booking,
    manual_clock,
    publish_clinic,
)


async def _two_messages(platform: Platform) -> tuple[str, list[str], str]:
    """An account with two messages (booked, then 退号) and another account with one."""
    slots = await publish_clinic(platform)
    account_id, booking_id, _ = await confirmed_booking(platform, slots[0])
    other_account, _, _ = await confirmed_booking(platform, slots[1])
    await platform.dispatcher.dispatch_pending()
    manual_clock(platform).advance(minutes=5)
    await platform.bookings.cancel(account_id=account_id, booking_id=booking_id)
    await platform.dispatcher.dispatch_pending()
    mine = [m.id for m in await platform.citizen_views.inbox(account_id)]
    theirs = (await platform.citizen_views.inbox(other_account))[0].id
    return account_id, mine, theirs


async def test_marking_one_message_read_lowers_the_count_and_keeps_the_first_reading(
    platform: Platform,
) -> None:
    account_id, (newest, older), _ = await _two_messages(platform)
    assert await platform.inbox.unread_count(account_id) == 2

    await platform.inbox.mark_read(account_id=account_id, notification_id=newest)
    first_read = platform.ports.clock.now()
    manual_clock(platform).advance(minutes=1)
    await platform.inbox.mark_read(account_id=account_id, notification_id=newest)

    assert await platform.inbox.unread_count(account_id) == 1
    inbox = {m.id: m for m in await platform.citizen_views.inbox(account_id)}
    assert inbox[newest].read_at == first_read
    assert inbox[older].read_at is None


async def test_marking_all_read_reads_only_the_accounts_own_unread_messages(
    platform: Platform,
) -> None:
    account_id, mine, theirs = await _two_messages(platform)
    await platform.inbox.mark_read(account_id=account_id, notification_id=mine[0])

    assert await platform.inbox.mark_all_read(account_id) == 1
    assert await platform.inbox.unread_count(account_id) == 0
    assert await platform.inbox.mark_all_read(account_id) == 0
    async with platform.ports.sessions() as session:
        other = await session.get(NotificationRow, theirs)
    assert other is not None
    assert other.read_at is None


async def test_another_accounts_message_is_as_unknown_as_a_made_up_id(
    platform: Platform,
) -> None:
    account_id, _, theirs = await _two_messages(platform)
    for notification_id in (theirs, "no-such-message"):
        await assert_refused(
            platform,
            "NOTIFICATION_NOT_FOUND",
            platform.inbox.mark_read(account_id=account_id, notification_id=notification_id),
        )
    async with platform.ports.sessions() as session:
        other = await session.get(NotificationRow, theirs)
    assert other is not None
    assert other.read_at is None
