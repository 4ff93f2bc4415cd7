"""A granted hold is answered from what the hold wrote and the slot's cached facts, without
reading the booking back: the answer must be exactly the booking's view, names included, and
a renamed doctor must show in the next answer, on both databases."""

from __future__ import annotations

import msgspec

from guahao.platform.schedules import DoctorSpec
from guahao.platform.services.queries import QueryService
from tests.fixtures.platforms import bulk_accounts, clinic, publish_clinic


async def test_the_answer_to_a_hold_is_the_bookings_view_without_reading_it(platform):
    slots = await publish_clinic(platform, clinic(units=2))
    account = (await bulk_accounts(platform, 1))[0]
    queries = QueryService(platform.ports)

    booking = await platform.bookings.hold(
        account_id=account, slot_id=slots[1], idempotency_key="k"
    )
    answer = await queries.hold_answer(booking, await platform.bookings.slot_facts(slots[1]))

    assert answer == await queries.booking(booking.id, account_id=account)
    assert (answer.doctor_name, answer.department_name, answer.hospital_name) == (
        "王伟",
        "心内科",
        "测试医院",
    )
    # the same bytes on the wire
    assert msgspec.json.encode(answer) == msgspec.json.encode(
        await queries.booking(booking.id, account_id=account)
    )


async def test_a_doctor_renamed_by_the_hospital_shows_in_the_next_hold_answer(platform):
    spec = clinic(units=2)
    slots = await publish_clinic(platform, spec)
    first, second = await bulk_accounts(platform, 2)
    queries = QueryService(platform.ports)
    booking = await platform.bookings.hold(account_id=first, slot_id=slots[0], idempotency_key="k")
    facts = await platform.bookings.slot_facts(slots[0])
    assert (await queries.hold_answer(booking, facts)).doctor_name == "王伟"

    renamed = DoctorSpec(
        code="d1", name="王伟明", title=spec.doctors[0].title, department_code="xnk"
    )
    await platform.supply.register_hospital(msgspec.structs.replace(spec, doctors=(renamed,)))
    booking = await platform.bookings.hold(account_id=second, slot_id=slots[0], idempotency_key="k")
    answer = await queries.hold_answer(booking, await platform.bookings.slot_facts(slots[0]))

    assert answer.doctor_name == "王伟明"
    assert answer == await queries.booking(booking.id, account_id=second)
