"""The session-stop journey end to end: a citizen books and pays over HTTP a slot that came
from the reference HIS's FHIR feed; the HIS sends SIU^S15 STOP over MLLP; the citizen finds the
booking cancelled by the hospital, the money refunded, and both messages in the inbox; the
hospital's system hears of the cancellation through the outbox."""

from __future__ import annotations

import hl7
import httpx
from sqlalchemy import select

from guahao.platform.persistence.tables import SessionRow, SlotRow
from tests.e2e.support import Citizen
from tests.fixtures.his_simulator import LOOPBACK_SENDERS, SIM_HOSPITAL, sim_hospital


async def test_a_stop_from_the_his_refunds_and_notifies_the_patient(
    platform, live_server, his_simulator
):
    port = await platform.connectors.start_mllp()
    his = await his_simulator(platform_mllp=port, doctors=1, capacity=2)
    await platform.supply.register_hospital(sim_hospital())
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "fhir", base_url=his.fhir, notify=True
    )
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "hl7v2", config={"facility": SIM_HOSPITAL, "senders": LOOPBACK_SENDERS}
    )
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "ok"
    async with platform.ports.sessions() as session:
        slot_id = await session.scalar(
            select(SlotRow.id)
            .join(SessionRow, SessionRow.id == SlotRow.session_id)
            .where(SessionRow.period == "morning")
            .order_by(SlotRow.starts_at)
            .limit(1)
        )

    async with httpx.AsyncClient(base_url=live_server, timeout=15) as http:
        citizen = await Citizen.sign_up(http)
        patient = await citizen.add_patient()
        booking = await citizen.confirmed_booking(slot_id, patient["id"])
        await platform.dispatcher.dispatch_pending()
        [appointment] = await his.admin("appointments")
        assert appointment["status"] == "booked"  # the HIS heard of the booking (FHIR)
        # 建档: the patient was filed first, and the HIS's record number reached the booking
        filing = await platform.feed.filing_of(booking["id"])
        assert filing is not None
        assert filing.status == "filed"
        assert filing.medical_record_no.startswith("MR")
        assert filing.his_appointment_id == appointment["id"]
        person = await platform.filings.for_patient(
            account_id=citizen.account_id, patient_id=patient["id"]
        )
        assert [(f.status, f.his_patient_id) for f in person] == [
            ("filed", filing.medical_record_no)
        ]  # and the person is on file at this hospital for the region's filing rules
        assert {"reference": f"Patient/{filing.medical_record_no}"}.items() <= next(
            p["actor"] for p in appointment["participant"] if "identifier" in p["actor"]
        ).items()

        answer = await his.admin(
            "stop",
            {
                "doctor": "d001",
                "date": "2026-03-04",
                "period": "morning",
                "reason": "医生临时停诊",
                "via": "hl7v2",
            },
        )
        assert str(hl7.parse(answer["ack"].replace("\n", "\r")).segment("MSA")[1]) == "AA"

        # 优先改约: the patient is offered other units first, the payment held for them;
        # declining lets the refund go out.
        for offer in (await citizen.get("/api/v1/rebooking-offers/")).json():
            declined = await citizen.post(f"/api/v1/rebooking-offers/{offer['id']}/decline")
            assert declined.status_code == 200, declined.text
        for refund_no in await platform.bookings.pending_refunds():
            await platform.bookings.process_refund(refund_no)
        await platform.dispatcher.dispatch_pending()

        seen = await citizen.booking(booking["id"])
        assert seen["status"] == "cancelled_by_hospital"
        inbox = (await citizen.get("/api/v1/me/notifications")).json()
        templates = {n["topic"] for n in inbox}
        assert {"booking.cancelled_by_hospital", "payment.refunded"} <= templates
    order = await platform.gateway.query_order(booking["paymentOrderNo"])
    assert order.status == "refunded"
    [appointment] = await his.admin("appointments")
    assert appointment["status"] == "cancelled"  # and the HIS heard of the cancellation
