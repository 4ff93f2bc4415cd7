"""The account's inbox as its owner keeps it: how many messages are unread, marking one or
all of them read.

Messages are written by the notifier (``NotificationRow``); this service only ever sets their
``read_at``, once: marking a message read again keeps the first time it was read, so the
inbox tells the owner when they first saw it.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from guahao.platform.error_codes import refuse
from guahao.platform.persistence.tables import NotificationRow
from guahao.platform.services.runtime import Ports

__all__ = ["Inbox"]


class Inbox:
    """Unread counts and read marks of an account's notifications."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def unread_count(self, account_id: str) -> int:
        """Messages of the account not yet read (the figure a page's header shows)."""
        async with self._p.sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(NotificationRow)
                .where(NotificationRow.account_id == account_id, NotificationRow.read_at.is_(None))
            )
        return int(count or 0)

    async def mark_read(self, *, account_id: str, notification_id: str) -> None:
        """Mark one message read; another account's message is refused as unknown, so an id
        never tells a stranger that it exists."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await session.get(NotificationRow, notification_id)
            if row is None or row.account_id != account_id:
                refuse("NOTIFICATION_NOT_FOUND", notification_id=notification_id)
            if row.read_at is None:
                row.read_at = now

    async def mark_all_read(self, account_id: str) -> int:
        """Mark every unread message of the account read; how many were unread."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            done = await session.execute(
                update(NotificationRow)
                .where(NotificationRow.account_id == account_id, NotificationRow.read_at.is_(None))
                .values(read_at=now)
            )
        return int(done.rowcount)  # type: ignore[attr-defined]
