"""The platform's reads of bookings by account and by person, and of cut-off events by their
session, each find an index on both backends, after migration 0014 took three index entries
off every hold.

``ix_bookings_account_id`` is gone (the unique ``(account_id, idempotency_key)`` index leads
with the account), ``ix_bookings_person_visit`` is partial (``person_id IS NOT NULL``, no
holds in it) and so is ``ix_outbox_aggregate_id`` (``session.cutoff`` events alone). A read
the planner could no longer serve from an index would scan the whole table: each read below
is planned with sequential scans made the last resort, and on PostgreSQL as a generic plan
(the parameters unknown, as a prepared statement is planned after its fifth execution),
where only the statement's own text can prove a partial index's predicate (``person_id = $1``
implies ``person_id IS NOT NULL``; the topic is written out).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import ClauseElement, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from guahao.platform.bookings import ACTIVE_STATUSES, LIVE_WITH_PATIENT
from guahao.platform.persistence.database import create_engine, upgrade_async
from guahao.platform.persistence.tables import CUTOFF_EVENTS, Base, BookingRow, OutboxRow
from guahao.platform.services.booking_limits import _TALLY

BY_ACCOUNT = "uq_bookings_account_id"
BY_PERSON = "ix_bookings_person_visit"
T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)

TALLY_VALUES = {
    "person": "p" * 32,
    "account": "a" * 32,
    "session": "s" * 32,
    "department": "d" * 32,
    "exclude": "",
    "day": date(2026, 12, 7),
    "month_first": date(2026, 12, 1),
    "next_month_first": date(2027, 1, 1),
    "session_wait_from": T0,
    "department_wait_from": T0,
}


def _render(value: Any) -> str:
    """A literal for ``EXECUTE``'s arguments (numbers, strings, dates and times only here)."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime | date):
        value = value.isoformat()
    assert isinstance(value, str)
    return "'" + value.replace("'", "''") + "'"


async def _plan(
    connection: AsyncConnection, statement: ClauseElement, values: dict[str, Any]
) -> str:
    """The plan of ``statement`` for ``values``, sequential scans priced out."""
    expanded = statement.compile(dialect=connection.dialect).construct_expanded_state(values)
    sql, parameters, order = expanded.statement, expanded.parameters, expanded.positiontup or []
    if connection.dialect.name == "sqlite":
        rows = await connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {sql}", tuple(parameters[name] for name in order)
        )
        plan = "\n".join(str(r[-1]) for r in rows)
        # SQLite names a unique constraint's index sqlite_autoindex_bookings_N
        for automatic, constraint in (await _constraint_indexes(connection)).items():
            plan = plan.replace(f"INDEX {automatic} ", f"INDEX {constraint} ")
        return plan
    await connection.exec_driver_sql("SET enable_seqscan = off")
    await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    await connection.exec_driver_sql(f"PREPARE read_to_plan AS {sql}")
    arguments = ", ".join(_render(parameters[name]) for name in order)
    rows = await connection.exec_driver_sql(f"EXPLAIN EXECUTE read_to_plan({arguments})")
    await connection.exec_driver_sql("DEALLOCATE read_to_plan")
    return "\n".join(str(r[0]) for r in rows)


async def _constraint_indexes(connection: AsyncConnection) -> dict[str, str]:
    """SQLite's own names of the unique constraints' indexes of bookings, to the names
    PostgreSQL gives them (``uq_bookings_<first column>``)."""
    names = {}
    for row in await connection.exec_driver_sql("PRAGMA index_list(bookings)"):
        name, origin = str(row[1]), str(row[3])
        if origin == "u":
            columns = await connection.exec_driver_sql(f"PRAGMA index_info({name})")
            names[name] = f"uq_bookings_{columns.first()[2]}"
    return names


READS: dict[str, tuple[ClauseElement, dict[str, Any], set[str]]] = {
    # booking_limits._tally: every count a patient choice checks, by person or by account
    "the limits' tally at a patient choice": (_TALLY, TALLY_VALUES, {BY_PERSON, BY_ACCOUNT}),
    # hold_grants: a repeated idempotency key's booking
    "a repeated key's booking": (
        select(BookingRow.id).where(
            BookingRow.account_id == "a" * 32, BookingRow.idempotency_key == "k" * 32
        ),
        {},
        {BY_ACCOUNT},
    ),
    # queries.bookings_of: the citizen's list of bookings
    "an account's bookings": (
        select(BookingRow.id)
        .where(BookingRow.account_id == "a" * 32)
        .order_by(BookingRow.created_at.desc())
        .limit(100),
        {},
        {BY_ACCOUNT},
    ),
    # add_on_units: one unit per person and session
    "a person's live booking in a session": (
        select(BookingRow.id)
        .where(
            BookingRow.session_id == "s" * 32,
            BookingRow.person_id == "p" * 32,
            BookingRow.status.in_(LIVE_WITH_PATIENT),
        )
        .limit(1),
        {},
        {BY_PERSON, "ix_bookings_session_id"},
    ),
    # waitlist._active_in_session
    "a person's active booking in a session, for the waitlist": (
        select(BookingRow.id).where(
            BookingRow.session_id == "s" * 32,
            BookingRow.person_id == "p" * 32,
            BookingRow.status.in_([s.value for s in ACTIVE_STATUSES]),
        ),
        {},
        {BY_PERSON, "ix_bookings_session_id"},
    ),
    # supply_demand: the units a session's cut-off moved on-site, for the rollups' rebuild
    "the cut-off events of sessions": (
        select(OutboxRow.aggregate_id, OutboxRow.payload).where(
            text(CUTOFF_EVENTS), OutboxRow.aggregate_id.in_(["s" * 32, "t" * 32])
        ),
        {},
        {"ix_outbox_aggregate_id"},
    ),
}


@pytest.mark.parametrize("read", list(READS))
async def test_reads_by_account_by_person_and_of_cutoff_events_each_use_an_index(
    database_url: str, read: str
) -> None:
    await upgrade_async(database_url)
    statement, values, indexes = READS[read]
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            plan = await _plan(connection, statement, values)
    finally:
        await engine.dispose()
    used = {name for name in indexes if name in plan}
    assert used, f"{read} uses none of {sorted(indexes)}:\n{plan}"
    assert "Seq Scan" not in plan  # PostgreSQL reading the whole table
    assert not re.search(r"^SCAN (bookings|outbox)\b", plan, re.MULTILINE)  # SQLite's


async def _migrated_indexes(database_url: str) -> tuple[str, dict[str, str]]:
    """The backend, and each index of the migrated database with its definition."""
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                rows = await connection.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                )
            else:
                rows = await connection.exec_driver_sql(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                )
            return connection.dialect.name, {str(r[0]): str(r[1]) for r in rows}
    finally:
        await engine.dispose()


async def test_the_holds_index_entries_taken_off_are_off_as_migrated(database_url: str) -> None:
    """Checked on the migrated database, not the models: the migration is what deploys."""
    _, migrated = await _migrated_indexes(database_url)
    assert "ix_bookings_account_id" not in migrated
    assert "person_id IS NOT NULL" in migrated[BY_PERSON]
    assert "session.cutoff" in migrated["ix_outbox_aggregate_id"]


async def test_every_partial_index_of_the_models_is_partial_as_migrated(
    database_url: str,
) -> None:
    """Alembic's comparison of models and migrations does not look at an index's predicate
    (a full index where the models declare a partial one passes it), so here: an index is
    partial in the migrated database exactly where the models say, and on SQLite, which
    keeps the statement as written, with the models' predicate."""
    backend, migrated = await _migrated_indexes(database_url)
    declared = {
        str(index.name): index.dialect_options[backend]["where"]
        for table in Base.metadata.tables.values()
        for index in table.indexes
    }
    assert {n for n, where in declared.items() if where is not None} == {
        n for n, sql in migrated.items() if " WHERE " in sql
    }
    if backend == "sqlite":
        for name, where in declared.items():
            if where is not None:
                assert migrated[name].endswith(f" WHERE {where}")
