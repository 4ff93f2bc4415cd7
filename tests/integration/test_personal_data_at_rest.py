"""Patient names, document numbers and phones never reach the database in the clear, nor an
answer where the rest of personal data is masked."""

from __future__ import annotations

from sqlalchemy import inspect, text

from guahao.platform.personal_data import NAME_FIELD
from guahao.platform.services.name_sealing import seal_patient_names
from tests.fixtures.platforms import hold, new_account, pay, publish_clinic, resident_id

ID_NUMBER = "11010519491231002X"
PHONE = "13812345678"
NAME = "欧阳娜娜"
"""Four characters (twelve bytes of UTF-8): no ciphertext holds them by chance."""


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
        name=NAME,
        document_type="resident_id",
        document_number=ID_NUMBER,
        phone=PHONE,
    )
    assert patient.name == NAME  # the account that entered it reads it back
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
                    assert NAME.encode() not in raw, table


async def test_names_written_in_the_clear_before_0012_are_sealed_by_the_backfill(
    platform,
) -> None:
    """A row a release before migration 0012 wrote (clear name, no seal) is read through its
    clear column until the backfill, run in batches, seals it and empties the column."""
    account = await new_account(platform)
    patients = [
        await platform.accounts.add_patient(
            account_id=account,
            name=name,
            document_type="resident_id",
            document_number=resident_id(serial),
            relation="other",
        )
        for serial, name in ((31_001, "欧阳娜娜"), (31_002, "司马相如"), (31_003, "诸葛孔明"))
    ]
    async with platform.engine.begin() as connection:  # as the old release wrote them
        for view in patients:
            await connection.execute(
                text("UPDATE patients SET name = :name, name_enc = NULL WHERE id = :id"),
                {"name": view.name, "id": view.id},
            )
    shown = sorted(p.name for p in await platform.accounts.patients(account))
    assert shown == sorted(["欧阳娜娜", "司马相如", "诸葛孔明"])

    assert await seal_patient_names(platform.ports, batch=2) == 3
    assert await seal_patient_names(platform.ports, batch=2) == 0
    async with platform.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT name, name_enc FROM patients"))).all()
    assert {clear for clear, _ in rows} == {""}
    assert sorted(platform.ports.vault.open(NAME_FIELD, sealed) for _, sealed in rows) == shown
    assert sorted(p.name for p in await platform.accounts.patients(account)) == shown
