"""The push API's single-booking cancellation over real HTTP: scoped to the token's hospital,
idempotent by key, refunded and never sold again."""

from __future__ import annotations

from guahao.platform.hospitals import PaymentMode
from tests.e2e.test_connector_push_api import hospital_client
from tests.fixtures.platforms import clinic, confirmed_booking, publish_clinic, slot_row


async def test_a_hospital_cancels_one_of_its_bookings_once_and_never_anothers(
    platform, live_server
):
    spec = clinic(PaymentMode.ONLINE_SELF_PAY)
    async with await hospital_client(platform, live_server, spec) as api:
        slots = await publish_clinic(platform, spec)
        everything = await publish_clinic(platform, clinic(code="h2"))
        other = [s for s in everything if s not in set(slots)]
        _, foreign_booking, _ = await confirmed_booking(platform, other[0])
        _, booking_id, order = await confirmed_booking(platform, slots[0])
        capacity = (await slot_row(platform, slots[0])).capacity

        body = {"bookingId": booking_id, "reason": "患者身份信息无法核实"}
        first = await api.post("/cancellations", json=body, headers={"Idempotency-Key": "c-1"})
        assert first.status_code == 200, first.text
        assert first.json() == {"result": f"booking {booking_id} cancelled_by_hospital"}
        again = await api.post("/cancellations", json=body, headers={"Idempotency-Key": "c-1"})
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"

        foreign = await api.post(
            "/cancellations",
            json={"bookingId": foreign_booking},
            headers={"Idempotency-Key": "c-2"},
        )
        assert (foreign.status_code, foreign.json()["code"]) == (404, "BOOKING_NOT_FOUND")
        empty = await api.post(
            "/cancellations",
            json={"bookingId": booking_id, "reason": ""},
            headers={"Idempotency-Key": "c-3"},
        )
        assert (empty.status_code, empty.json()["code"]) == (422, "VALIDATION_FAILED")

    assert (await platform.bookings.get(booking_id)).status.value == "cancelled_by_hospital"
    assert (await platform.bookings.get(foreign_booking)).status.value == "confirmed"
    assert (await slot_row(platform, slots[0])).capacity == capacity - 1
    [refund_no] = await platform.bookings.pending_refunds()
    assert await platform.bookings.process_refund(refund_no) is True
    assert (await platform.gateway.query_order(order.order_no)).status == "refunded"
