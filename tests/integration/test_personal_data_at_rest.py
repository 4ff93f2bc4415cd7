"""Document numbers and phones never reach the database or an answer in the clear."""

from __future__ import annotations

from sqlalchemy import text

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
