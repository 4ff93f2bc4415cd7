"""A hospital cancels one booking (not the whole session): cancelled by the hospital, refunded
in full, told, never a strike, and the unit withdrawn rather than sold again; through the
service, and from a HIS over real MLLP sockets (SIU^S15 without STOP)."""

from __future__ import annotations

import hl7
from sqlalchemy import func, select

from guahao.platform.clock import to_epoch_ms
from guahao.platform.hospitals import PaymentMode
from guahao.platform.persistence.tables import RefundRow, StrikeRow
from tests.fixtures.his_simulator import LOOPBACK_SENDERS, SIM_HOSPITAL, sim_hospital
from tests.fixtures.platforms import (
    assert_refused,
    booking_row,
    clinic,
    confirmed_booking,
    counts,
    held_with_patient,
    hold,
    new_account,
    outbox_topics,
    publish_clinic,
    slot_row,
)


async def hospital_id_of(platform, code: str = "h1") -> str:
    return await platform.feed.hospital_id(code)


async def test_a_paid_booking_cancelled_by_the_hospital_is_refunded_and_its_unit_withdrawn(
    platform,
):
    slots = await publish_clinic(platform, clinic(PaymentMode.ONLINE_SELF_PAY))
    account_id, booking_id, order = await confirmed_booking(platform, slots[0])
    before_sql = await slot_row(platform, slots[0])
    before_pool = await counts(platform, slots[0])

    booking = await platform.bookings.cancel_by_hospital(
        booking_id, reason="该患者需转诊", hospital_id=await hospital_id_of(platform)
    )

    assert booking.status.value == "cancelled_by_hospital"
    row = await booking_row(platform, booking_id)
    assert (row.status, row.end_reason, row.unit_returns_at) == (
        "cancelled_by_hospital",
        "hospital_cancelled",
        None,
    )
    after_sql = await slot_row(platform, slots[0])
    assert (after_sql.capacity, after_sql.online_quota, after_sql.online_booked) == (
        before_sql.capacity - 1,
        before_sql.online_quota - 1,
        before_sql.online_booked - 1,
    )
    # the unit is not handed to anyone: the pool offers exactly what it offered before
    after_pool = await counts(platform, slots[0])
    assert after_pool.available == before_pool.available
    assert after_pool.booked == before_pool.booked - 1
    # and a rebuild from SQL agrees with the pool
    await platform.inventory_sync.load_slot(slots[0])
    assert (await counts(platform, slots[0])).available == before_pool.available

    async with platform.ports.sessions() as session:
        [refund] = (await session.scalars(select(RefundRow))).all()
    assert (refund.booking_id, refund.amount_cents, refund.reason) == (
        booking_id,
        3000,
        "hospital_cancelled",
    )
    assert await platform.bookings.process_refund(refund.refund_no) is True
    assert (await platform.gateway.query_order(order.order_no)).status == "refunded"

    await platform.dispatcher.dispatch_pending()
    await platform.dispatcher.dispatch_pending()
    assert (await outbox_topics(platform))["booking.cancelled_by_hospital"] == 1
    async with platform.ports.sessions() as session:
        strikes = await session.scalar(select(func.count()).select_from(StrikeRow))
    assert strikes == 0  # the hospital's cancellation never counts against the patient

    # a repeat changes nothing
    again = await platform.bookings.cancel_by_hospital(booking_id, reason="该患者需转诊")
    assert again.status.value == "cancelled_by_hospital"
    assert (await slot_row(platform, slots[0])).capacity == before_sql.capacity - 1
    assert (await outbox_topics(platform))["booking.cancelled_by_hospital"] == 1
    assert account_id


async def test_a_held_booking_cancelled_by_the_hospital_frees_the_account_not_the_unit(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.ONLINE_SELF_PAY))
    account_id, _, booking_id = await held_with_patient(platform, slots[0])
    before = await counts(platform, slots[0])
    capacity = (await slot_row(platform, slots[0])).online_quota

    await platform.bookings.cancel_by_hospital(
        booking_id, reason="号源已被医院收回", hospital_id=await hospital_id_of(platform)
    )

    after = await counts(platform, slots[0])
    assert (after.held, after.available) == (before.held - 1, before.available)
    assert (await slot_row(platform, slots[0])).online_quota == capacity - 1
    # the account may hold again at once (its one-hold marker is gone)
    again = await hold(platform, account_id, slots[1])
    assert again.status.value == "held"


async def test_a_hospital_cannot_cancel_another_hospitals_or_an_ended_booking(platform):
    slots = await publish_clinic(platform, clinic(PaymentMode.ONLINE_SELF_PAY))
    await publish_clinic(platform, clinic(code="h2"))
    _, booking_id, _ = await confirmed_booking(platform, slots[0])
    other = await hospital_id_of(platform, "h2")

    await assert_refused(
        platform,
        "BOOKING_NOT_FOUND",
        platform.bookings.cancel_by_hospital(booking_id, reason="x", hospital_id=other),
    )
    await platform.bookings.check_in(booking_id)
    await assert_refused(
        platform,
        "BOOKING_STATE_INVALID",
        platform.bookings.cancel_by_hospital(
            booking_id, reason="x", hospital_id=await hospital_id_of(platform)
        ),
    )
    stranger = await new_account(platform)
    assert stranger


def msa(ack: str) -> tuple[str, str]:
    segment = hl7.parse(ack.replace("\n", "\r")).segment("MSA")
    return str(segment[1]), str(segment[3]) if len(segment) > 3 else ""


def cancellation(booking_id: str, control_id: str, *, facility: str = SIM_HOSPITAL) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|HIS|{facility}|GUAHAO|REGION|20260301080000+0800||SIU^S15^SIU_S12|"
            f"{control_id}|P|2.5",
            f"SCH|{booking_id}^GUAHAO|appt-1||||CANCEL^取消|^患者信息无法核实",
            "RGS|1|D",
            "AIP|1|D|d001",
        ]
    )


async def test_a_siu_s15_without_stop_cancels_that_one_booking_over_mllp(platform, his_simulator):
    port = await platform.connectors.start_mllp()
    his = await his_simulator(platform_mllp=port, doctors=1, capacity=2)
    await platform.supply.register_hospital(sim_hospital())
    await platform.connectors.registry.register(SIM_HOSPITAL, "fhir", base_url=his.fhir)
    assert (await platform.connectors.sync.pull(SIM_HOSPITAL)).status == "ok"
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "hl7v2", config={"facility": SIM_HOSPITAL, "senders": LOOPBACK_SENDERS}
    )
    from tests.integration.test_hl7_mllp import first_slot

    slot_id = await first_slot(platform)
    _, booking_id, _ = await confirmed_booking(platform, slot_id)
    _, other_booking, _ = await confirmed_booking(platform, slot_id)
    before = await slot_row(platform, slot_id)

    answer = await his.admin("hl7", {"message": cancellation(booking_id, "CXL-1")})

    code, text = msa(answer["ack"])
    assert code == "AA", text
    assert "cancelled_by_hospital" in text
    assert (await platform.bookings.get(booking_id)).status.value == "cancelled_by_hospital"
    assert (await platform.bookings.get(other_booking)).status.value == "confirmed"
    after = await slot_row(platform, slot_id)
    assert after.capacity == before.capacity - 1
    now_ms = to_epoch_ms(platform.ports.clock.now())
    pool = (await platform.ports.inventory.counts([slot_id], now_ms=now_ms))[slot_id]
    assert pool.available == 0  # the HIS took that unit away: nobody else gets it

    # the HIS did not hear the ACK and sends it again: the same answer, no second effect
    again = await his.admin("hl7", {"message": cancellation(booking_id, "CXL-1")})
    assert msa(again["ack"]) == (code, text)
    assert (await slot_row(platform, slot_id)).capacity == before.capacity - 1
    # a cancellation of a booking that is not this hospital's is refused for good
    unknown = await his.admin("hl7", {"message": cancellation("nope", "CXL-2")})
    assert msa(unknown["ack"])[0] == "AR"


async def test_the_patient_of_a_booking_the_hospital_cancelled_goes_first_in_the_waitlist(
    platform,
):
    from guahao.platform.persistence.tables import NotificationRow, WaitlistEntryRow

    slots = await publish_clinic(platform, clinic(PaymentMode.PAY_AT_HOSPITAL))
    account_id, booking_id, _ = await confirmed_booking(platform, slots[0])
    await platform.bookings.cancel_by_hospital(
        booking_id, reason="医生临时手术", hospital_id=await hospital_id_of(platform)
    )
    await platform.dispatcher.dispatch_pending()
    await platform.dispatcher.dispatch_pending()
    row = await booking_row(platform, booking_id)
    async with platform.ports.sessions() as session:
        [wait] = (await session.scalars(select(WaitlistEntryRow))).all()
        texts = (
            await session.scalars(
                select(NotificationRow).where(
                    NotificationRow.account_id == account_id,
                    NotificationRow.template == "booking.cancelled_by_hospital",
                )
            )
        ).all()
    assert (wait.patient_id, wait.status) == (row.patient_id, "waiting")
    assert wait.priority == (await platform.rules.region()).waitlist.hospital_stop_priority
    # the message says the hospital cancelled this booking, not that the session stopped
    [text] = texts
    assert "医院取消" in text.params["zh"]
    assert "停诊" not in text.params["zh"]
    # a repeated delivery adds no second wait
    assert await platform.waitlist.on_hospital_cancelled(booking_id) == 0
