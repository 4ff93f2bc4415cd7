"""An account's inbox (``AccountService.notifications``): what the inbox notifier wrote for
the account's bookings, newest first, never another account's, at most a page. On both
databases."""

from __future__ import annotations

from datetime import timedelta

from guahao.bootstrap import Platform
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import NotificationRow
from guahao.platform.services.accounts import INBOX_PAGE
from tests.fixtures.platforms import (
    confirmed_booking,
    manual_clock,
    new_account,
    publish_clinic,
)


async def test_the_inbox_holds_the_accounts_booking_messages_newest_first(
    platform: Platform,
) -> None:
    slots = await publish_clinic(platform)
    account_id, booking_id, _ = await confirmed_booking(platform, slots[0])
    await confirmed_booking(platform, slots[1])  # another account's booking
    await platform.dispatcher.dispatch_pending()
    manual_clock(platform).advance(minutes=5)
    await platform.bookings.cancel(account_id=account_id, booking_id=booking_id)
    await platform.dispatcher.dispatch_pending()

    inbox = await platform.accounts.notifications(account_id)

    assert [n.topic for n in inbox] == ["booking.cancelled_by_patient", "booking.confirmed"]
    assert all(n.params["booking_id"] == booking_id for n in inbox)
    assert inbox[0].params["zh"]
    assert inbox[0].params["en"]
    assert inbox[0].created_at > inbox[1].created_at


async def test_an_account_without_messages_has_an_empty_inbox(platform: Platform) -> None:
    assert await platform.accounts.notifications(await new_account(platform)) == []


async def test_the_inbox_shows_the_newest_page_only(platform: Platform) -> None:
    account_id = await new_account(platform)
    start = platform.ports.clock.now()
    async with platform.ports.sessions() as session, session.begin():
        session.add_all(
            NotificationRow(
                id=new_id(),
                account_id=account_id,
                template="booking.confirmed",
                params={"n": str(i)},
                dedupe_key=f"test:{i}",
                created_at=start + timedelta(seconds=i),
            )
            for i in range(INBOX_PAGE + 5)
        )

    inbox = await platform.accounts.notifications(account_id)

    assert len(inbox) == INBOX_PAGE
    assert inbox[0].params["n"] == str(INBOX_PAGE + 4)
    assert inbox[-1].params["n"] == "5"
