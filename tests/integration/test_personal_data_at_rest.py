"""Document numbers and phones never reach the database or an answer in the clear."""

from __future__ import annotations

from sqlalchemy import inspect, text

from tests.fixtures.platforms import hold, pay, publish_clinic

ID_NUMBER = "11010519491231002X"
PHONE = "13812345678"


async def test_patients_and_accounts_are_stored_sealed_and_shown_masked(platform) -> None:
    account = await platform.accounts.register(phone=PHONE, password="password1")
    view = await platform.accounts.add_patient(
        account_id=account,
        name="张三",
        document_type="resident_id",
        document_number=ID_NUMBER.lower(),
        phone=PHONE,
    )
    assert view.document_masked == "110105********002X"
    assert view.phone_masked == "138****5678"
    assert ID_NUMBER not in repr(view)
    assert PHONE not in repr(view)

    async with platform.engine.connect() as connection:
        for table in ("patients", "accounts"):
            rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()
            assert rows
            for row in rows:
                for value in row:
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    assert ID_NUMBER.encode() not in raw.upper()
                    assert PHONE.encode() not in raw

    # The platform itself can still read them back, through the vault.
    async with platform.ports.sessions() as session:
        sealed = (await session.execute(text("SELECT document_enc, phone_enc FROM patients"))).one()
    assert platform.ports.vault.open("document", sealed[0]) == ID_NUMBER
    assert platform.ports.vault.open("phone", sealed[1]) == PHONE


async def test_an_account_is_found_by_its_phone_without_storing_it(platform) -> None:
    account = await platform.accounts.register(phone=PHONE, password="password1")
    assert await platform.accounts.authenticate(phone=PHONE, password="password1") == account


async def test_no_table_holds_a_phone_or_id_number_in_the_clear_after_a_booking_journey(
    platform,
) -> None:
    """Every table, found by reading the schema (so a new table cannot be missed), after a
    journey that writes to most of them: account, patient, hold, payment, confirmation, 退号
    with its refund, notifications, outbox events and the audit trail."""
    slots = await publish_clinic(platform)
    account = await platform.accounts.register(phone=PHONE, password="password1")
    patient = await platform.accounts.add_patient(
        account_id=account,
        name="张三",
        document_type="resident_id",
        document_number=ID_NUMBER,
        phone=PHONE,
    )
    booking = await hold(platform, account, slots[0])
    await platform.bookings.choose_patient(
        account_id=account, booking_id=booking.id, patient_id=patient.id
    )
    _booking, order = await platform.bookings.submit(
        account_id=account, booking_id=booking.id, channel="self_pay"
    )
    assert order is not None
    await pay(platform, order.order_no)
    await platform.bookings.cancel(account_id=account, booking_id=booking.id)
    await platform.dispatcher.dispatch_pending()

    async with platform.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        assert {"accounts", "patients", "bookings", "outbox", "notifications"} <= set(tables)
        for table in tables:
            for row in (await connection.execute(text(f'SELECT * FROM "{table}"'))).all():
                for value in row:
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    assert ID_NUMBER.encode() not in raw.upper(), table
                    assert PHONE.encode() not in raw, table
