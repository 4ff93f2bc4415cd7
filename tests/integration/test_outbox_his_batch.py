"""The HIS notifier's batch entry point against the reference HIS over real FHIR and MLLP.

A run tells hospitals exactly what one event at a time tells them (same messages per booking,
in the same order, and the same filing rows); bookings of different hospitals go side by
side, so a hospital whose system hangs holds up only its own bookings, whose first event then
parks with its error and is retried alone while the others are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import delete, select

from guahao.bootstrap import Platform
from guahao.hospital_connectors.hub import HIS_NOTIFIER
from guahao.hospital_connectors.mllp import frame, read_frame
from guahao.platform.persistence.connector_tables import BookingFilingRow
from guahao.platform.persistence.outbox import OutboxEvent
from guahao.platform.persistence.tables import OutboxRow
from tests.fixtures.his_simulator import LOOPBACK_SENDERS, SIM_HOSPITAL
from tests.fixtures.platforms import clinic, confirmed_booking, publish_clinic
from tests.integration.test_hl7_mllp import connected
from tests.integration.test_outbox_batch_entry_points import booking_events, slots_of


def of_booking(messages: list[str], booking_id: str) -> list[str]:
    return [m for m in messages if booking_id in m]


async def filing_rows(platform: Platform) -> list[tuple[str, str, str, str]]:
    async with platform.ports.sessions() as session:
        rows = (await session.scalars(select(BookingFilingRow))).all()
        filed = (
            await session.scalars(
                select(OutboxRow.aggregate_id).where(OutboxRow.topic == "booking.filed")
            )
        ).all()
    return sorted(
        [(r.booking_id, r.status, r.medical_record_no, r.his_appointment_id) for r in rows]
        + [(b, "event", "", "") for b in filed]
    )


async def forget_filings(platform: Platform) -> None:
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(delete(BookingFilingRow))
        await session.execute(delete(OutboxRow).where(OutboxRow.topic == "booking.filed"))


async def test_the_batch_tells_the_his_what_one_event_at_a_time_tells_it(
    platform: Platform, his_simulator: Any
) -> None:
    _, his = await connected(platform, his_simulator, notify=True)
    # FHIR too: 建档 by conditional update, whose answer the platform keeps (rows)
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "fhir", base_url=his.fhir, notify=True
    )
    first, second = (await slots_of(platform, SIM_HOSPITAL))[:2]
    account_id, cancelled, _ = await confirmed_booking(platform, first)
    _, kept, _ = await confirmed_booking(platform, second)
    await platform.bookings.cancel(account_id=account_id, booking_id=cancelled)
    events: list[OutboxEvent] = await booking_events(platform)
    notifier = platform.connectors.notifier

    seen = len(await his.admin("hl7"))
    for event in events:
        await notifier(event)
    one_by_one = (await his.admin("hl7"))[seen:]
    rows_one_by_one = await filing_rows(platform)
    await forget_filings(platform)

    seen += len(one_by_one)
    assert await notifier.handle_batch(events) is True
    batched = (await his.admin("hl7"))[seen:]

    assert sorted(batched) == sorted(one_by_one)
    for booking_id in (cancelled, kept):
        kinds = [m.split("|")[8] for m in of_booking(batched, booking_id)]
        assert of_booking(batched, booking_id) == of_booking(one_by_one, booking_id)
        assert kinds[0].startswith("ADT^A28")
        assert kinds[1].startswith("SIU^S12")
    assert [m.split("|")[8] for m in of_booking(batched, cancelled)][-1].startswith("SIU^S15")
    assert rows_one_by_one
    assert await filing_rows(platform) == rows_one_by_one


@contextlib.asynccontextmanager
async def hanging_his() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """An MLLP listener that takes each message and answers nothing until released, then
    NAKs (AE: try again later) everything: a hospital system that hangs, then is unwell."""
    released = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await read_frame(reader) is not None:
                await released.wait()
                writer.write(frame("MSH|^~\\&|H2|h2|GH|GH|20261206||ACK|1|P|2.5\rMSA|AE|1\r"))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], released
    finally:
        released.set()
        server.close()


async def test_a_hanging_hospital_holds_up_only_its_own_bookings_which_park_and_retry_alone(
    platform: Platform, his_simulator: Any
) -> None:
    _, his = await connected(platform, his_simulator, notify=True)
    await publish_clinic(platform, clinic(code="h2"))
    async with hanging_his() as (port, released):
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
        # the hanging hospital's bookings come first in the outbox
        slow = [
            (await confirmed_booking(platform, s))[1] for s in (await slots_of(platform, "h2"))[:5]
        ]
        fast = [
            (await confirmed_booking(platform, s))[1]
            for s in (await slots_of(platform, SIM_HOSPITAL))[:2]
        ]
        round_ = asyncio.create_task(platform.dispatcher.dispatch_pending())
        deadline = time.monotonic() + 8  # the MLLP client gives up on a silent peer after 10 s
        told: list[str] = []
        while time.monotonic() < deadline:
            told = await his.admin("hl7")
            if all(any(b in m and "SIU^S12" in m for m in told) for b in fast):
                break
            await asyncio.sleep(0.2)
        hung = not round_.done()
        released.set()
        await round_

    assert hung, "the round ended before the check: the hospital did not hang"
    assert all(any(b in m and "SIU^S12" in m for m in told) for b in fast)
    parked = await platform.dispatcher.parked(HIS_NOTIFIER)
    assert {p.aggregate_id for p in parked} == set(slow)
    failed = [p for p in parked if p.attempts]
    assert sorted(p.aggregate_id for p in failed) == sorted(slow)  # one each, the rest behind
    assert all(p.attempts == 1 and "AE" in (p.last_error or "") for p in failed)

    # the next round retries the parked events alone: the other hospital hears nothing again
    before = await his.admin("hl7")
    await platform.dispatcher.dispatch_pending()
    assert await his.admin("hl7") == before
    again = [p for p in await platform.dispatcher.parked(HIS_NOTIFIER) if p.attempts]
    assert sorted(p.aggregate_id for p in again) == sorted(slow)
    assert all(p.attempts == 2 for p in again)
    assert len([m for m in before if any(b in m for b in fast) and "SIU^S12" in m]) == 2
