"""The migrations are the schema: on both backends they build exactly what the models declare,
undo cleanly, and leave the invariants to the database itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from guahao.platform.persistence.database import (
    alembic_config,
    create_engine,
    of_backend,
    upgrade_async,
)
from guahao.platform.persistence.tables import (
    AccountRow,
    Base,
    BookingRow,
    DepartmentRow,
    DoctorRow,
    HospitalRow,
    PatientRow,
    PersonRow,
    SessionRow,
    SlotRow,
)

T0 = datetime(2026, 3, 4, 0, 0, tzinfo=UTC)
ACTIVE_INDEX = "uq_bookings_active_patient_session"


async def _downgrade(url: str, revision: str = "base") -> None:
    # Alembic's env runs its own event loop, so (like ``upgrade_async``) off this one.
    await asyncio.to_thread(command.downgrade, alembic_config(url), revision)


def _schema_differences(connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "include_object": of_backend(connection.dialect.name)},
    )
    return list(compare_metadata(context, Base.metadata))


def _table_names(connection: Any) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _run(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


async def test_upgraded_schema_matches_the_models_exactly(database_url: str) -> None:
    await upgrade_async(database_url)
    # No allowance for SQLite type affinity or anything else: there is nothing to ignore.
    assert await _run(database_url, _schema_differences) == []

    # and the comparison is not blind: a missing partial index is reported
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP INDEX {ACTIVE_INDEX}"))
    finally:
        await engine.dispose()
    differences = await _run(database_url, _schema_differences)
    assert [(d[0], d[1].name) for d in differences] == [("add_index", ACTIVE_INDEX)]


async def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    await upgrade_async(database_url)
    model_tables = set(Base.metadata.tables)
    assert model_tables <= await _run(database_url, _table_names)

    await _downgrade(database_url)
    assert await _run(database_url, _table_names) <= {"alembic_version"}

    await upgrade_async(database_url)
    assert model_tables <= await _run(database_url, _table_names)
    assert await _run(database_url, _schema_differences) == []
    # upgrading at head is a no-op, not an error
    await upgrade_async(database_url)


async def _index_sql(engine: AsyncEngine) -> str:
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
        else:
            query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
        found = (await connection.execute(text(query), {"name": ACTIVE_INDEX})).scalar_one_or_none()
    assert found is not None, f"{ACTIVE_INDEX} is missing on {engine.dialect.name}"
    return str(found)


async def _seed(engine: AsyncEngine) -> dict[str, str]:
    """The smallest graph a booking needs: hospital, department, doctor, session, slot,
    account and patient, written straight into the tables."""
    ids = {
        "hospital": "h1",
        "department": "dep1",
        "doctor": "doc1",
        "session": "s1",
        "slot": "sl1",
        "account": "a1",
        "patient": "p1",
    }
    async with engine.begin() as connection:
        await connection.execute(
            insert(HospitalRow),
            [
                {
                    "id": "h1",
                    "code": "h1",
                    "name": "测试医院",
                    "grade": "3A",
                    "district": "朝阳区",
                    "address": "",
                    "aliases": [],
                    "timezone": "Asia/Shanghai",
                    "policies": {},
                    "active": True,
                }
            ],
        )
        await connection.execute(
            insert(DepartmentRow),
            [
                {
                    "id": "dep1",
                    "hospital_id": "h1",
                    "code": "xnk",
                    "name": "心内科",
                    "catalog_code": "03.04",
                    "aliases": [],
                    "location": "",
                }
            ],
        )
        await connection.execute(
            insert(DoctorRow),
            [
                {
                    "id": "doc1",
                    "hospital_id": "h1",
                    "department_id": "dep1",
                    "code": "d1",
                    "name": "王伟",
                    "title": "chief",
                    "expertise": "",
                    "sex": "",
                }
            ],
        )
        await connection.execute(
            insert(SessionRow),
            [
                {
                    "id": "s1",
                    "hospital_id": "h1",
                    "department_id": "dep1",
                    "doctor_id": "doc1",
                    "date": date(2026, 3, 4),
                    "period": "morning",
                    "category": "specialist",
                    "fee_cents": 3000,
                    "starts_at": T0,
                    "ends_at": T0 + timedelta(hours=4),
                    "release_at": T0 - timedelta(days=7),
                    "cutoff_at": T0 - timedelta(hours=1),
                    "status": "open",
                    "cutoff_done": False,
                    "no_shows_marked": False,
                    "external_id": "",
                }
            ],
        )
        await connection.execute(
            insert(SlotRow),
            [
                {
                    "id": "sl1",
                    "session_id": "s1",
                    "seq": 1,
                    "starts_at": T0,
                    "ends_at": T0 + timedelta(minutes=30),
                    "capacity": 3,
                    "online_quota": 2,
                    "offline_quota": 1,
                    "online_booked": 0,
                    "release_at": T0 - timedelta(days=7),
                    "status": "open",
                }
            ],
        )
        await connection.execute(
            insert(AccountRow),
            [
                {
                    "id": "a1",
                    "phone_hash": "ph",
                    "phone_enc": b"x",
                    "password_hash": "pw",
                    "display_name": "",
                    "created_at": T0,
                }
            ],
        )
        await connection.execute(
            insert(PersonRow),
            [
                {
                    "id": "person1",
                    "document_hash": "dh",
                    "document_type": "resident_id",
                    "sex": "",
                    "verification_level": "format_checked",
                    "verified_by": "test",
                    "created_at": T0,
                    "lock_version": 0,
                }
            ],
        )
        await connection.execute(
            insert(PatientRow),
            [
                {
                    "id": "p1",
                    "person_id": "person1",
                    "account_id": "a1",
                    "name": "张三",
                    "relation": "self",
                    "document_type": "resident_id",
                    "document_hash": "dh",
                    "document_enc": b"x",
                    "document_masked": "1***",
                    "phone_masked": "",
                    "created_at": T0,
                }
            ],
        )
    return ids


def _booking(booking_id: str, status: str) -> dict[str, Any]:
    return {
        "id": booking_id,
        "account_id": "a1",
        "slot_id": "sl1",
        "session_id": "s1",
        "patient_id": "p1",
        "status": status,
        "idempotency_key": f"k-{booking_id}",
        "fee_cents": 3000,
        "payment_required": False,
        "paid": False,
        "hold_expires_at": T0,
        "created_at": T0,
        "updated_at": T0,
        "version": 1,
    }


async def test_partial_unique_index_exists_and_allows_only_one_active_booking(
    database_url: str,
) -> None:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        ddl = (await _index_sql(engine)).lower()
        assert "unique" in ddl
        assert "where" in ddl
        for status in ("patient_chosen", "awaiting_payment", "confirmed", "checked_in"):
            assert status in ddl

        await _seed(engine)
        async with engine.begin() as connection:
            # ended bookings are outside the index: any number of them
            await connection.execute(
                insert(BookingRow), [_booking("b1", "expired"), _booking("b2", "cancelled")]
            )
            await connection.execute(insert(BookingRow), [_booking("b3", "confirmed")])
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(insert(BookingRow), [_booking("b4", "patient_chosen")])
    finally:
        await engine.dispose()


async def test_database_refuses_to_oversell_a_slot(database_url: str) -> None:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        await _seed(engine)
        async with engine.begin() as connection:  # up to the quota is fine
            await connection.execute(
                update(SlotRow).where(SlotRow.id == "sl1").values(online_booked=2)
            )
        with pytest.raises(IntegrityError, match="not_oversold"):
            async with engine.begin() as connection:
                await connection.execute(
                    update(SlotRow)
                    .where(SlotRow.id == "sl1")
                    .values(online_booked=SlotRow.online_booked + 1)
                )
        with pytest.raises(IntegrityError, match="not_oversold"):
            async with engine.begin() as connection:  # shrinking the quota under the bookings
                await connection.execute(
                    update(SlotRow)
                    .where(SlotRow.id == "sl1")
                    .values(online_quota=1, offline_quota=2)
                )
        async with engine.connect() as connection:
            booked = (
                await connection.execute(text("SELECT online_booked FROM slots WHERE id = 'sl1'"))
            ).scalar_one()
        assert booked == 2
    finally:
        await engine.dispose()


async def test_a_bookings_slot_and_session_are_checked_and_on_postgresql_must_agree(
    database_url: str,
) -> None:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        await _seed(engine)
        async with engine.begin() as connection:  # a second session of the doctor, slot-less
            session_row = (
                (await connection.execute(select(SessionRow).where(SessionRow.id == "s1")))
                .one()
                ._asdict()
            )
            await connection.execute(
                insert(SessionRow), [session_row | {"id": "s2", "period": "afternoon"}]
            )
        for wrong in ({"slot_id": "nowhere"}, {"session_id": "nowhere"}):
            with pytest.raises(IntegrityError):
                async with engine.begin() as connection:
                    await connection.execute(insert(BookingRow), [_booking("b1", "held") | wrong])
        elsewhere = _booking("b2", "held") | {"session_id": "s2"}  # both exist, not a pair
        if engine.dialect.name == "postgresql":  # one foreign key to the slot's own pair (0015)
            with pytest.raises(IntegrityError, match="fk_bookings_slot_id_session_id_slots"):
                async with engine.begin() as connection:
                    await connection.execute(insert(BookingRow), [elsewhere])
        else:  # SQLite keeps a foreign key each (tables.SLOT_AND_SESSION)
            async with engine.begin() as connection:
                await connection.execute(insert(BookingRow), [elsewhere])
        async with engine.begin() as connection:
            await connection.execute(insert(BookingRow), [_booking("b3", "held")])
            recorded = (await connection.execute(select(BookingRow.id))).scalars().all()
        assert sorted(recorded) == (["b2", "b3"] if engine.dialect.name == "sqlite" else ["b3"])
    finally:
        await engine.dispose()


async def test_patients_recorded_before_the_rules_each_become_a_person(database_url: str) -> None:
    """Upgrading a database with patients: one person per document, shared across accounts."""
    await upgrade_async(database_url, "0001")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for account in ("a1", "a2"):
                await connection.execute(
                    text(
                        "INSERT INTO accounts (id, phone_hash, phone_enc, password_hash,"
                        " display_name, created_at) VALUES (:id, :id, :x, 'pw', '', :t)"
                    ),
                    {"id": account, "x": b"x", "t": T0.replace(tzinfo=None)},
                )
            for patient, account, document in (
                ("p1", "a1", "d1"),
                ("p2", "a2", "d1"),
                ("p3", "a2", "d2"),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO patients (id, account_id, name, relation, document_type,"
                        " document_hash, document_enc, document_masked, phone_masked, created_at)"
                        " VALUES (:id, :a, '张三', 'other', 'resident_id', :d, :x, '1***', '', :t)"
                    ),
                    {
                        "id": patient,
                        "a": account,
                        "d": document,
                        "x": b"x",
                        "t": T0.replace(tzinfo=None),
                    },
                )
        await upgrade_async(database_url)
        async with engine.connect() as connection:
            rows = (
                await connection.execute(text("SELECT id, person_id FROM patients ORDER BY id"))
            ).all()
            persons = (await connection.execute(text("SELECT COUNT(*) FROM persons"))).scalar()
    finally:
        await engine.dispose()
    by_patient = dict(rows)
    assert persons == 2
    assert by_patient["p1"] == by_patient["p2"] != by_patient["p3"]
