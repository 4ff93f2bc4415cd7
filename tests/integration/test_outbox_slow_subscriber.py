"""A slow subscriber holds up only itself: while the HIS notifier waits on a hospital system
that hangs, the citizen's notifications of new bookings still go out at the next tick of the
dispatch cron.

Before, a job run held every subscriber until its slowest one had ended, so a hanging HIS
(the MLLP client waits 10 s for an answer, and tries twice) delayed every notification by as
much; now each group of subscribers is handed back as soon as it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.hospital_connectors.hub import HIS_NOTIFIER
from guahao.hospital_connectors.mllp import frame, read_frame
from guahao.platform.persistence.tables import NotificationRow
from tests.fixtures.his_simulator import LOOPBACK_SENDERS
from tests.fixtures.platforms import clinic, confirmed_booking, publish_clinic
from tests.integration.test_outbox_batch_entry_points import slots_of


@contextlib.asynccontextmanager
async def hanging_his() -> AsyncIterator[tuple[int, asyncio.Event, asyncio.Event]]:
    """An MLLP listener that takes a message and answers nothing until released, then
    accepts (AA) everything: a hospital system that hangs for a while."""
    arrived, released = asyncio.Event(), asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await read_frame(reader) is not None:
                arrived.set()
                await released.wait()
                writer.write(frame("MSH|^~\\&|H2|h2|GH|GH|20261206||ACK|1|P|2.5\rMSA|AA|1\r"))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], arrived, released
    finally:
        released.set()
        server.close()


async def notifications(platform: Platform, account_id: str) -> list[NotificationRow]:
    async with platform.ports.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(NotificationRow).where(NotificationRow.account_id == account_id)
                )
            ).all()
        )


async def test_a_hanging_his_does_not_hold_back_the_notifications_of_later_bookings(
    platform: Platform,
) -> None:
    await publish_clinic(platform, clinic(code="h2"))
    async with hanging_his() as (port, arrived, released):
        await platform.connectors.registry.register(
            "h2",
            "hl7v2",
            config={
                "facility": "h2",
                "notify_host": "127.0.0.1",
                "notify_port": port,
                "senders": LOOPBACK_SENDERS,
            },
            notify=True,
        )
        first, second = (await slots_of(platform, "h2"))[:2]
        await confirmed_booking(platform, first)
        hung_run = asyncio.create_task(platform.dispatcher.dispatch_pending())
        await asyncio.wait_for(arrived.wait(), 10)  # the HIS notifier now waits on the hospital

        account_id, _, _ = await confirmed_booking(platform, second)
        assert await notifications(platform, account_id) == []
        # the cron's next tick, while the first run still waits on the hospital
        await asyncio.wait_for(platform.dispatcher.dispatch_pending(), 8)
        told = await notifications(platform, account_id)
        still_hanging = not hung_run.done()
        released.set()
        await hung_run

    assert still_hanging, "the first run ended before the check: the hospital did not hang"
    assert told, "the citizen's notification waited for the hanging hospital system"
    # the HIS notifier itself was not delivered twice at once: the second tick skipped it,
    # and the run that held it went on to the second booking afterwards or leaves it for later
    assert await platform.dispatcher.parked(HIS_NOTIFIER) == []
