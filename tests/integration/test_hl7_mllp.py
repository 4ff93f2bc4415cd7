"""HL7 v2 over real MLLP sockets between the platform and the reference HIS: session stops and
arrivals in, ACK/NAK out, idempotency by control id, and booking notifications to a hospital
that keeps working through an HIS outage without holding back anyone else's messages."""

from __future__ import annotations

import hl7
from sqlalchemy import select

from guahao.hospital_connectors.mllp import MllpClient
from guahao.platform.persistence.tables import NotificationRow, SessionRow, SlotRow
from tests.fixtures.his_simulator import LOOPBACK_SENDERS, SIM_HOSPITAL, sim_hospital
from tests.fixtures.platforms import clinic, confirmed_booking, publish_clinic


async def connected(platform, his_simulator, *, notify: bool = False):
    """The platform listening for MLLP, the simulator's schedule pulled over FHIR, and the
    hospital's HL7 v2 connector registered (facility = MSH-4)."""
    port = await platform.connectors.start_mllp()
    his = await his_simulator(platform_mllp=port, doctors=1, capacity=2)
    await platform.supply.register_hospital(sim_hospital())
    await platform.connectors.registry.register(SIM_HOSPITAL, "fhir", base_url=his.fhir)
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "ok"
    await platform.connectors.registry.register(
        SIM_HOSPITAL,
        "hl7v2",
        config={
            "facility": SIM_HOSPITAL,
            "notify_host": "127.0.0.1",
            "notify_port": his.mllp_port,
            "senders": LOOPBACK_SENDERS,
        },
        notify=notify,
    )
    return port, his


async def first_slot(platform, period: str = "morning") -> str:
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(SlotRow.id)
            .join(SessionRow, SessionRow.id == SlotRow.session_id)
            .where(SessionRow.period == period)
            .order_by(SlotRow.starts_at)
            .limit(1)
        )
    assert found is not None
    return found


def msa(ack: str) -> tuple[str, str, str]:
    message = hl7.parse(ack.replace("\n", "\r"))
    segment = message.segment("MSA")
    text = str(segment[3]) if len(segment) > 3 else ""
    return str(segment[1]), str(segment[2]), text


async def test_a_session_stop_sent_over_mllp_is_applied_once(platform, his_simulator):
    _, his = await connected(platform, his_simulator)
    slot_id = await first_slot(platform)
    _, booking_id, _ = await confirmed_booking(platform, slot_id)

    answer = await his.admin(
        "stop",
        {
            "doctor": "d001",
            "date": "2026-03-04",
            "period": "morning",
            "reason": "医生临时停诊",
            "via": "hl7v2",
            "control_id": "STOP-1",
        },
    )

    code, control, text = msa(answer["ack"])
    assert (code, control) == ("AA", "STOP-1")
    assert "1 bookings cancelled" in text
    assert (await platform.bookings.get(booking_id)).status.value == "cancelled_by_hospital"
    async with platform.ports.sessions() as session:
        statuses = dict((await session.execute(select(SessionRow.period, SessionRow.status))).all())
    assert statuses == {"morning": "stopped", "afternoon": "open"}

    # the HIS did not hear the ACK and sends the same message again: same answer, no effect
    again = await his.admin(
        "stop",
        {
            "doctor": "d001",
            "date": "2026-03-04",
            "period": "morning",
            "reason": "医生临时停诊",
            "via": "hl7v2",
            "control_id": "STOP-1",
        },
    )
    assert msa(again["ack"]) == (code, control, text)


async def test_an_arrival_checks_the_booking_in_and_another_hospitals_booking_is_refused(
    platform, his_simulator
):
    _, his = await connected(platform, his_simulator)
    _, booking_id, _ = await confirmed_booking(platform, await first_slot(platform))
    async with platform.ports.sessions() as session:
        ours = set((await session.scalars(select(SlotRow.id))).all())
    h2_slot = next(s for s in await publish_clinic(platform, clinic(code="h2")) if s not in ours)
    _, foreign, _ = await confirmed_booking(platform, h2_slot)

    answer = await his.admin("check-in", {"booking": booking_id, "control_id": "ARR-1"})
    assert msa(answer["ack"])[0] == "AA"
    assert (await platform.bookings.get(booking_id)).status.value == "checked_in"

    refused = await his.admin("check-in", {"booking": foreign, "control_id": "ARR-2"})
    ack = hl7.parse(refused["ack"].replace("\n", "\r"))
    assert str(ack.segment("MSA")[1]) == "AR"
    assert "BOOKING_NOT_FOUND" in str(ack.segment("ERR"))
    assert (await platform.bookings.get(foreign)).status.value == "confirmed"


async def test_broken_and_unknown_messages_get_a_nak_with_a_code(platform, his_simulator):
    port, _ = await connected(platform, his_simulator)
    client = MllpClient("127.0.0.1", port)
    try:
        garbage = hl7.parse((await client.send("this is not HL7")).replace("\n", "\r"))
        assert str(garbage.segment("MSA")[1]) == "AR"
        assert "HL7_MESSAGE_INVALID" in str(garbage.segment("ERR"))

        stranger = (
            "MSH|^~\\&|HIS|nowhere|GUAHAO|REGION|20260304080000||ADT^A04|X-1|P|2.5\r"
            "PV1|1|O|||||||||||||||||b1^^^GUAHAO^VN\r"
        )
        reply = hl7.parse((await client.send(stranger)).replace("\n", "\r"))
        assert "CONNECTOR_NOT_FOUND" in str(reply.segment("ERR"))

        lab = f"MSH|^~\\&|LAB|{SIM_HOSPITAL}|GUAHAO|REGION|20260304080000||ORU^R01|L-1|P|2.5\r"
        reply = hl7.parse((await client.send(lab)).replace("\n", "\r"))
        assert str(reply.segment("MSA")[1]) == "AR"
        assert "HL7_MESSAGE_UNSUPPORTED" in str(reply.segment("ERR"))
    finally:
        await client.close()


async def test_bookings_reach_the_his_in_order_and_survive_its_outage(platform, his_simulator):
    _, his = await connected(platform, his_simulator, notify=True)
    slot_id = await first_slot(platform)
    account_id, booking_id, _ = await confirmed_booking(platform, slot_id)

    await his.admin("outage", {"down": True})  # the HIS answers AE to everything
    await platform.dispatcher.dispatch_pending()
    await platform.bookings.cancel(account_id=account_id, booking_id=booking_id)
    await platform.dispatcher.dispatch_pending()

    # the citizen was told at once; nothing reached the HIS; the HIS's deliveries are parked
    async with platform.ports.sessions() as session:
        inbox = set(
            (
                await session.scalars(
                    select(NotificationRow.template).where(NotificationRow.account_id == account_id)
                )
            ).all()
        )
    assert {"booking.confirmed", "booking.cancelled_by_patient"} <= inbox
    assert [m for m in await his.admin("hl7") if booking_id in m] == []
    parked = await platform.dispatcher.parked("hospital_connectors.his_notifier")
    assert parked
    assert all(p.aggregate_id == booking_id for p in parked)

    await his.admin("outage", {"down": False})
    await platform.dispatcher.dispatch_pending()

    received = [m for m in await his.admin("hl7") if booking_id in m]
    triggers = [str(hl7.parse(m.replace("\n", "\r")).segment("MSH")[9]) for m in received]
    kinds = [t.split("^")[1] for t in triggers]
    # 建档 (A28), then confirmed, then cancelled: in order
    assert kinds[-3:] == ["A28", "S12", "S15"]
    assert kinds.count("S12") == 1
    filing = hl7.parse(received[-3].replace("\n", "\r"))
    assert str(filing.segment("PID")[3]).split("~")[1].split("^")[0].startswith("110105")
    assert await platform.dispatcher.parked("hospital_connectors.his_notifier") == []
