from guahao.platform.clock import ManualClock
from tests.fixtures.platforms import at_local, SESSION_DAY, publish_clinic


async def test_a_hold_can_be_paid_and_confirmed(platform):
    slots = await publish_clinic(platform)
    clock = platform.ports.clock
    assert isinstance(clock, ManualClock)
    clock.set(at_local(SESSION_DAY - __import__("datetime").timedelta(days=7), 8, 1))
    account = await platform.accounts.register(phone="13800000001", password="password1")
    patient = await platform.accounts.add_patient(account_id=account, name="张三", document_type="resident_id", document_number="11010519491231002X")
    b = await platform.bookings.hold(account_id=account, slot_id=slots[0], idempotency_key="a")
    await platform.bookings.choose_patient(account_id=account, booking_id=b.id, patient_id=patient.id)
    b, order = await platform.bookings.submit(account_id=account, booking_id=b.id, channel="self_pay")
    headers, body = await platform.gateway.pay(order.order_no, channel="self_pay")
    out = await platform.bookings.handle_payment_notice(headers, body)
    assert out.result == "confirmed"
