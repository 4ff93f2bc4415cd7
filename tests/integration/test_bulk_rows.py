"""Rows written by ``insert_rows`` (``COPY`` on PostgreSQL, ``executemany`` on SQLite) are the
rows an ``INSERT`` stores: the columns a row leaves out get their defaults, datetimes are
checked and stored as for an ``INSERT``; on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError, StatementError

from guahao.platform.ids import new_id
from guahao.platform.persistence.bulk_rows import insert_rows
from guahao.platform.persistence.outbox import event_values
from guahao.platform.persistence.tables import DoctorRow, OutboxRow, SessionRow
from tests.fixtures.platforms import SESSION_DAY, clinic


async def _session_row(platform, day_offset: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async with platform.ports.sessions() as session:
        doctor = (await session.scalars(select(DoctorRow).limit(1))).one()
    starts_at = datetime(2030, 1, 7, 1, 0, tzinfo=UTC)  # the same in each: only date differs
    return {  # only the columns publishing names: status, flags, lottery times by default
        "id": new_id(),
        "hospital_id": doctor.hospital_id,
        "department_id": doctor.department_id,
        "doctor_id": doctor.id,
        "date": SESSION_DAY + timedelta(days=day_offset),
        "period": "morning",
        "category": "general",
        "fee_cents": 500,
        "starts_at": starts_at,
        "ends_at": starts_at + timedelta(hours=3),
        "release_at": starts_at - timedelta(days=7),
        "cutoff_at": starts_at - timedelta(hours=1),
        "external_id": "his-1",
    }


async def test_copied_rows_are_the_rows_an_insert_stores(platform):  # type: ignore[no-untyped-def]
    await platform.supply.register_hospital(clinic(units=4))
    copied, inserted = await _session_row(platform, 100), await _session_row(platform, 101)
    async with platform.ports.sessions() as session, session.begin():
        await insert_rows(session, SessionRow, [copied])
        await session.execute(insert(SessionRow), [inserted])
    async with platform.ports.sessions() as session:
        rows = {
            row.id: row
            for row in (
                await session.scalars(
                    select(SessionRow).where(SessionRow.id.in_([copied["id"], inserted["id"]]))
                )
            ).all()
        }
    columns = [c.key for c in SessionRow.__table__.columns if c.key not in ("id", "date")]
    stored = {c: getattr(rows[copied["id"]], c) for c in columns}
    assert stored == {c: getattr(rows[inserted["id"]], c) for c in columns}
    assert stored["status"] == "open"
    assert stored["cutoff_done"] is False
    assert stored["lottery_opens_at"] is None
    assert stored["starts_at"] == copied["starts_at"]
    assert stored["starts_at"].tzinfo is not None


async def test_a_naive_datetime_is_refused_and_nothing_is_written(platform):  # type: ignore[no-untyped-def]
    await platform.supply.register_hospital(clinic(units=4))
    good, naive = await _session_row(platform, 102), await _session_row(platform, 103)
    naive["starts_at"] = naive["starts_at"].replace(tzinfo=None)
    with pytest.raises((ValueError, StatementError), match="naive"):
        async with platform.ports.sessions() as session, session.begin():
            await insert_rows(session, SessionRow, [good, naive])
    async with platform.ports.sessions() as session:
        written = select(func.count()).where(SessionRow.id.in_([good["id"], naive["id"]]))
        assert await session.scalar(written) == 0


async def test_a_column_the_table_lacks_is_refused_not_dropped(platform):  # type: ignore[no-untyped-def]
    await platform.supply.register_hospital(clinic(units=4))
    row = await _session_row(platform, 104) | {"colour": "red"}
    with pytest.raises((ValueError, StatementError)):
        async with platform.ports.sessions() as session, session.begin():
            await insert_rows(session, SessionRow, [row])


async def test_a_row_breaking_a_constraint_raises_integrity_error(platform):  # type: ignore[no-untyped-def]
    await platform.supply.register_hospital(clinic(units=4))
    first = await _session_row(platform, 105)
    again = first | {"id": new_id()}  # the same doctor, day and period: unique
    with pytest.raises(IntegrityError):
        async with platform.ports.sessions() as session, session.begin():
            await insert_rows(session, SessionRow, [first, again])


async def test_copied_events_keep_their_json_payload_and_get_their_serial_ids(platform):  # type: ignore[no-untyped-def]
    now = datetime(2030, 1, 1, tzinfo=UTC)
    payloads = [{"session_id": f"s{n}", "names": ["王", "李"], "n": n} for n in range(3)]
    async with platform.ports.sessions() as session, session.begin():
        await insert_rows(
            session,
            OutboxRow,
            [event_values("bulk.copied", f"agg{n}", p, now) for n, p in enumerate(payloads)],
        )
    async with platform.ports.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxRow).where(OutboxRow.topic == "bulk.copied").order_by(OutboxRow.id)
            )
        ).all()
    assert [r.payload for r in rows] == payloads
    assert [r.aggregate_id for r in rows] == ["agg0", "agg1", "agg2"]
    assert all(r.id is not None and r.attempts == 0 and r.dispatched_at is None for r in rows)
    assert rows[0].created_at == now
