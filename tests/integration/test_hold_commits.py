"""Group commit of granted holds, on both databases with a real Redis: concurrent grants share
transactions, and every guarantee of a grant written alone still holds (a grant answered is
recorded, a row breaking a rule is refused alone, its unit goes back to the pool)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from guahao.bootstrap import Platform
from guahao.platform.bookings import Booking
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.outages import is_database_outage
from guahao.platform.persistence.outbox import event_values
from guahao.platform.persistence.recordset_inserts import MissingColumnError, RecordsetInsert
from guahao.platform.persistence.tables import BookingRow, OutboxRow
from guahao.platform.services.hold_commits import BOOKINGS, OUTBOX, HoldCommits
from tests.fixtures.platforms import (
    bulk_accounts,
    clinic,
    counts,
    manual_clock,
    outbox_topics,
    publish_clinic,
    session_of,
)

CROWD = 40


def held_row(
    booking_id: str, account_id: str, slot_id: str, session_id: str, key: str, now: datetime
) -> dict[str, object]:
    """A granted hold's columns as ``grant_hold`` gives them to ``HoldCommits.record`` (the
    client's hashes left to the model's defaults)."""
    return {
        "id": booking_id,
        "account_id": account_id,
        "slot_id": slot_id,
        "session_id": session_id,
        "status": "held",
        "idempotency_key": key,
        "fee_cents": 500,
        "hold_expires_at": now,
        "created_at": now,
        "updated_at": now,
    }


async def a_slot_and_accounts(
    platform: Platform, units: int, accounts: int
) -> tuple[str, list[str], str, datetime]:
    """A published slot of ``units``, ``accounts`` new accounts, the slot's session and the
    clock's now: what a test of the writer alone needs for its rows."""
    slots = await publish_clinic(platform, clinic(units=units))
    crowd = await bulk_accounts(platform, accounts)
    return slots[0], crowd, await session_of(platform, slots[0]), platform.ports.clock.now()


async def a_lone_statement(
    platform: Platform, booking_id: str
) -> tuple[dict[str, object], dict[str, object], RecordsetInsert]:
    """A granted hold's booking row and event on a slot of its own, and the PostgreSQL
    statement ``HoldCommits`` would write them with: for tests of the statement alone."""
    slot, accounts, session_id, now = await a_slot_and_accounts(platform, 2, 1)
    row = held_row(booking_id, accounts[0], slot, session_id, "k", now)
    held = event_values("booking.held", booking_id, {"booking_id": booking_id}, now)
    statement = RecordsetInsert(
        platform.engine.dialect, (BOOKINGS, tuple(row)), (OUTBOX, tuple(held))
    )
    return row, held, statement


async def test_concurrent_grants_share_a_few_transactions_and_all_are_recorded(platform):
    slots = await publish_clinic(platform, clinic(units=CROWD))
    crowd = await bulk_accounts(platform, CROWD)
    await platform.bookings.slot_facts(slots[0])  # warm: the surge's reads are not the subject
    # the service's own writer (on PostgreSQL its statement goes to asyncpg directly, past
    # SQLAlchemy's cursor events)
    commits: HoldCommits = platform.bookings._grants._hold_commits

    results = await asyncio.gather(
        *(
            platform.bookings.hold(account_id=a, slot_id=slots[0], idempotency_key=f"g{n}")
            for n, a in enumerate(crowd)
        )
    )

    assert all(isinstance(r, Booking) for r in results)
    # Forty grants, written alone, would be forty transactions; together they take a handful.
    assert 1 <= commits.transactions <= CROWD // 4, commits.transactions
    async with platform.ports.sessions() as session:
        recorded = set((await session.scalars(select(BookingRow.id))).all())
    assert recorded == {r.id for r in results}
    assert (await outbox_topics(platform))["booking.held"] == CROWD
    assert (await counts(platform, slots[0])).held == CROWD


async def test_a_row_breaking_a_rule_is_refused_alone_and_the_rest_of_its_batch_commits(platform):
    slots = await publish_clinic(platform, clinic(units=8))
    accounts = await bulk_accounts(platform, 5)
    session_id = await session_of(platform, slots[0])
    now = platform.ports.clock.now()
    commits = HoldCommits(platform.ports)

    def booking(n: int, account: str, key: str) -> dict[str, object]:
        return held_row(f"commit-test-{n}", account, slots[0], session_id, key, now)

    await commits.record(booking(0, accounts[0], "k"), {"booking_id": "commit-test-0"}, now)
    results = await asyncio.gather(
        *(
            commits.record(booking(n, accounts[n], "k"), {"booking_id": f"commit-test-{n}"}, now)
            for n in (1, 2, 3, 4)
        ),
        # the same account and key as the first record: the unique constraint refuses it
        commits.record(booking(5, accounts[0], "k"), {"booking_id": "commit-test-5"}, now),
        return_exceptions=True,
    )

    assert results[:4] == [False] * 4  # committed; no survival check was asked for
    assert isinstance(results[4], IntegrityError)
    # the first alone, the batch of five (refused), then each of the five alone
    assert commits.transactions == 1 + 1 + 5
    async with platform.ports.sessions() as session:
        recorded = set((await session.scalars(select(BookingRow.id))).all())
        held_events = await session.scalar(
            select(func.count()).select_from(BookingRow).where(BookingRow.id.like("commit-test%"))
        )
    assert recorded == {f"commit-test-{n}" for n in range(5)}
    assert held_events == 5
    assert (await outbox_topics(platform))["booking.held"] == 5


async def test_a_repeated_request_in_a_crowd_gets_the_first_grant_and_holds_one_unit(platform):
    slots = await publish_clinic(platform, clinic(units=CROWD))
    crowd = await bulk_accounts(platform, CROWD)
    await platform.bookings.slot_facts(slots[0])

    # the first account taps twice with one key, in the middle of the crowd's grants
    results = await asyncio.gather(
        *(
            platform.bookings.hold(account_id=a, slot_id=slots[0], idempotency_key=f"g{n}")
            for n, a in enumerate(crowd)
        ),
        platform.bookings.hold(account_id=crowd[0], slot_id=slots[0], idempotency_key="g0"),
        return_exceptions=True,
    )

    for result in results:
        if isinstance(result, BaseException):
            raise result
    bookings = [r for r in results if isinstance(r, Booking)]
    assert bookings[0].id == bookings[-1].id
    assert len({b.id for b in bookings}) == CROWD
    snap = await counts(platform, slots[0])
    assert (snap.held, snap.available) == (CROWD, 0)
    async with platform.ports.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(BookingRow)) == CROWD


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
async def test_grants_whose_record_fails_give_their_units_back(platform):
    slots = await publish_clinic(platform, clinic(units=6))
    crowd = await bulk_accounts(platform, 6)
    await platform.bookings.slot_facts(slots[0])
    # The bookings table cannot be written (a trigger fails every insert, as a full disk or a
    # revoked grant would): every grant of the batch must come back to the pool.
    async with platform.engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE FUNCTION refuse_bookings() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
        )
        await connection.exec_driver_sql(
            "CREATE TRIGGER refuse_bookings BEFORE INSERT ON bookings "
            "FOR EACH ROW EXECUTE FUNCTION refuse_bookings()"
        )

    results = await asyncio.gather(
        *(
            platform.bookings.hold(account_id=a, slot_id=slots[0], idempotency_key=f"g{n}")
            for n, a in enumerate(crowd)
        ),
        return_exceptions=True,
    )

    assert {r.code for r in results if isinstance(r, GuahaoError)} == {"DATABASE_UNAVAILABLE"}
    assert all(isinstance(r, GuahaoError) for r in results), results
    snap = await counts(platform, slots[0])
    assert (snap.held, snap.available) == (0, 6)


async def test_a_crowd_granted_in_one_second_schedules_one_expiry_job_that_expires_it(platform):
    slots = await publish_clinic(platform, clinic(units=CROWD))
    crowd = await bulk_accounts(platform, CROWD)
    queue = platform.jobs.queue
    before = await queue.count("incomplete")

    results = await asyncio.gather(
        *(
            platform.bookings.hold(account_id=a, slot_id=slots[0], idempotency_key=f"g{n}")
            for n, a in enumerate(crowd)
        )
    )

    # one job for the second they all run out in, not one per hold
    assert await queue.count("incomplete") == before + 1
    second = int(results[0].hold_expires_at.timestamp())
    assert (await queue.job(f"expire-due:{second}")) is not None
    assert (await queue.job(f"expire:{results[0].id}:held")) is None
    manual_clock(platform).advance(minutes=11)  # hold_minutes is 10
    expired = await platform.job_functions()["expire_due_bookings"]()
    assert expired == CROWD
    async with platform.ports.sessions() as session:
        statuses = set((await session.scalars(select(BookingRow.status))).all())
    assert statuses == {"expired"}
    snap = await counts(platform, slots[0])
    assert (snap.held, snap.available) == (0, CROWD)


async def test_a_commits_holds_are_checked_in_the_pool_in_one_call_not_one_per_grant(
    platform, monkeypatch
):
    slots = await publish_clinic(platform, clinic(units=CROWD))
    crowd = await bulk_accounts(platform, CROWD)
    await platform.bookings.slot_facts(slots[0])
    inventory = platform.ports.inventory
    asked: list[str] = []
    alone, together = inventory.holds, inventory.holds_all

    async def holds(slot_id: str, *, hold_id: str, now_ms: int) -> bool:
        asked.append("alone")
        return await alone(slot_id, hold_id=hold_id, now_ms=now_ms)

    async def holds_all(checks):
        asked.append("together")
        return await together(checks)

    monkeypatch.setattr(inventory, "holds", holds)
    monkeypatch.setattr(inventory, "holds_all", holds_all)
    results = await asyncio.gather(
        *(
            platform.bookings.hold(account_id=a, slot_id=slots[0], idempotency_key=f"g{n}")
            for n, a in enumerate(crowd)
        )
    )

    assert len({r.id for r in results}) == CROWD
    assert "alone" not in asked  # the pool vouched for every hold of every commit
    assert 1 <= asked.count("together") <= CROWD // 4, asked


async def test_the_pool_vouches_only_for_the_holds_it_knows(platform):
    slots = await publish_clinic(platform, clinic(units=4))
    accounts = await bulk_accounts(platform, 2)
    session_id = await session_of(platform, slots[0])
    now = platform.ports.clock.now()
    now_ms = int(now.timestamp() * 1000)
    await platform.bookings.slot_facts(slots[0])  # the slot loaded in the pool
    await platform.ports.inventory.hold(
        slots[0],
        hold_id="survival-0",
        account_id=accounts[0],
        now_ms=now_ms,
        ttl_ms=600_000,
        idempotency_key=f"{accounts[0]}:k0",
    )
    commits = HoldCommits(platform.ports)

    def booking(n: int) -> dict[str, object]:
        return held_row(f"survival-{n}", accounts[n], slots[0], session_id, f"k{n}", now)

    known, unknown = await asyncio.gather(
        *(
            commits.record(booking(n), {"booking_id": f"survival-{n}"}, now, check=check)
            for n, check in (
                (0, (slots[0], "survival-0", now_ms)),
                (1, (slots[0], "survival-1", now_ms)),  # never held in the pool
            )
        )
    )

    assert (known, unknown) == (True, False)
    # a slot the pool does not know, and a hold that ran out, are not vouched for either
    inventory = platform.ports.inventory
    assert await inventory.holds_all([("no-such-slot", "survival-0", now_ms)]) == {
        "survival-0": False
    }
    assert await inventory.holds_all([(slots[0], "survival-0", now_ms + 600_001)]) == {
        "survival-0": False
    }
    assert await inventory.holds_all([(slots[0], "survival-0", now_ms)]) == {"survival-0": True}


async def test_a_granted_holds_rows_are_written_as_core_would_write_them(platform):
    slots = await publish_clinic(platform, clinic(units=2))
    accounts = await bulk_accounts(platform, 2)
    session_id = await session_of(platform, slots[0])
    now = platform.ports.clock.now()
    row = {
        "id": "columns-0",
        "account_id": accounts[0],
        "slot_id": slots[0],
        "session_id": session_id,
        "status": "held",
        "idempotency_key": "k",
        "fee_cents": 500,
        "hold_expires_at": now,
        "created_at": now,
        "updated_at": now,
        "ip_hash": "ip",
        "device_hash": "",
    }
    payload = {"booking_id": "columns-0", "fee_cents": 500, "nested": {"when": now.isoformat()}}

    # a second row in the same transaction (one statement of both tables on PostgreSQL)
    later = now + timedelta(minutes=3)
    other = row | {
        "id": "columns-1",
        "account_id": accounts[1],
        "idempotency_key": "k2",
        "fee_cents": 0,
        "hold_expires_at": later,
        "ip_hash": "",
        "device_hash": "device",
    }
    other_payload = {"booking_id": "columns-1", "list": [1, "二"], "none": None}
    commits = HoldCommits(platform.ports)

    await asyncio.gather(
        commits.record(row, payload, now), commits.record(other, other_payload, later)
    )

    assert commits.transactions == 1
    async with platform.ports.sessions() as session:
        booking = await session.get(BookingRow, "columns-0")
        second = await session.get(BookingRow, "columns-1")
        event = await session.scalar(select(OutboxRow).where(OutboxRow.aggregate_id == "columns-0"))
        events = (
            await session.scalars(
                select(OutboxRow).where(OutboxRow.topic == "booking.held").order_by(OutboxRow.id)
            )
        ).all()
    assert booking is not None
    assert second is not None
    assert event is not None
    assert {name: getattr(booking, name) for name in row} == row  # aware UTC times back
    assert {name: getattr(second, name) for name in other} == other
    assert [(e.aggregate_id, e.payload, e.created_at) for e in events] == [
        ("columns-0", payload, now),
        ("columns-1", other_payload, later),
    ]  # in the order of the batch
    # the columns the row leaves out get the model's defaults
    assert (booking.kind, booking.origin, booking.version, booking.paid) == (
        "regular",
        "patient",
        1,
        False,
    )
    assert (booking.payment_required, booking.follow_up_visits, booking.patient_id) == (
        False,
        0,
        None,
    )
    assert (event.topic, event.payload, event.created_at, event.attempts) == (
        "booking.held",
        payload,
        now,
        0,
    )
    assert event.dispatched_at is None


async def test_rows_of_other_columns_in_one_crowd_are_each_written_with_their_own_columns(
    platform,
):
    slot, accounts, session_id, now = await a_slot_and_accounts(platform, 4, 4)
    commits = HoldCommits(platform.ports)

    def booking(n: int) -> dict[str, object]:
        return held_row(f"shape-{n}", accounts[n], slot, session_id, f"k{n}", now)

    # the first row carries the client's hashes, the next two leave them to the defaults: a
    # statement made for the first row's columns lacks them for those two (a KeyError for the
    # whole batch once, a 500 to all four)
    rows = [
        booking(0) | {"ip_hash": "ip-0", "device_hash": "device-0"},
        booking(1),
        booking(2),
        booking(3) | {"ip_hash": "ip-3", "device_hash": "device-3"},
    ]
    results = await asyncio.gather(
        *(commits.record(row, {"booking_id": row["id"]}, now) for row in rows),
        return_exceptions=True,
    )

    assert results == [False] * 4  # all committed
    # one transaction per run of rows of one shape, in the crowd's order
    assert commits.transactions == 3
    async with platform.ports.sessions() as session:
        written = {
            b.id: (b.ip_hash, b.device_hash)
            for b in await session.scalars(select(BookingRow).where(BookingRow.id.like("shape-%")))
        }
    assert written == {
        "shape-0": ("ip-0", "device-0"),
        "shape-1": ("", ""),
        "shape-2": ("", ""),
        "shape-3": ("ip-3", "device-3"),
    }
    assert (await outbox_topics(platform))["booking.held"] == 4


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
async def test_a_batch_sent_on_a_broken_link_is_an_outage_and_its_connection_is_replaced(platform):
    row, held, statement = await a_lone_statement(platform, "link-0")

    async with platform.engine.connect() as connection:
        (await connection.get_raw_connection()).driver_connection.terminate()
        with pytest.raises(OperationalError) as raised:
            await statement.execute(connection, [row], [held])
        assert connection.invalidated  # the pool does not lend the dead link again
        # what grant_hold answers DATABASE_UNAVAILABLE for
        assert is_database_outage(raised.value)

        # the writer keeps its connection for the next batch: a new link replaces the dead one
        await statement.execute(connection, [row], [held])

    async with platform.ports.sessions() as session:
        assert (await session.get(BookingRow, "link-0")) is not None


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
async def test_batches_that_follow_each_other_share_one_connection_given_back_after(platform):
    slot, accounts, session_id, now = await a_slot_and_accounts(platform, 5, 5)
    commits = HoldCommits(platform.ports, most=1)  # a batch per row
    checkouts: list[object] = []

    def checked_out(*_: object) -> None:
        checkouts.append(_)

    pool = platform.engine.sync_engine.pool
    event.listen(pool, "checkout", checked_out)
    try:
        await asyncio.gather(
            *(
                commits.record(
                    held_row(f"kept-{n}", accounts[n], slot, session_id, "k", now),
                    {"booking_id": f"kept-{n}"},
                    now,
                )
                for n in range(5)
            )
        )
    finally:
        event.remove(pool, "checkout", checked_out)

    assert commits.transactions == 5
    assert len(checkouts) == 1  # one checkout for the five statements
    assert pool.checkedout() == 0  # given back once the queue ran dry
    async with platform.ports.sessions() as session:
        written = await session.scalar(
            select(func.count()).select_from(BookingRow).where(BookingRow.id.like("kept-%"))
        )
    assert written == 5


async def test_a_granted_holds_text_and_zoned_times_come_back_as_they_were_given(platform):
    # On PostgreSQL a batch's rows travel as one JSON document (RecordsetInsert): every
    # character JSON escapes, and a time given in another zone, must come back unchanged.
    slot, accounts, session_id, now = await a_slot_and_accounts(platform, 2, 1)
    shanghai = now.astimezone(ZoneInfo("Asia/Shanghai"))
    key = "q\"uote \\back\nslash\t二 \u2028 🏥 </x> ' ,{}[]"
    row = held_row("text-0", accounts[0], slot, session_id, key, shanghai)
    row |= {"ip_hash": "\\u0041", "device_hash": "null"}
    payload = {"booking_id": "text-0", "note": key, "at": shanghai.isoformat(), "n": 2**40}

    await HoldCommits(platform.ports).record(row, payload, shanghai)

    async with platform.ports.sessions() as session:
        booking = await session.get(BookingRow, "text-0")
        event = await session.scalar(select(OutboxRow).where(OutboxRow.aggregate_id == "text-0"))
    assert booking is not None
    assert event is not None
    assert {name: getattr(booking, name) for name in row} == row
    assert booking.created_at.utcoffset() == timedelta(0)  # the same instant, stored as UTC
    assert (event.payload, event.created_at) == (payload, shanghai)


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
async def test_a_batch_with_a_naive_time_or_a_stray_column_is_refused_before_it_is_sent(platform):
    # A key missing from a row's JSON object would be a silent NULL in json_to_recordset, and a
    # naive time would be read in the server's zone: both are refused before anything is sent.
    row, held, statement = await a_lone_statement(platform, "refused-0")
    naive = row | {"hold_expires_at": held["created_at"].replace(tzinfo=None)}
    stray = row | {"channel": "app"}
    lacking = {name: value for name, value in row.items() if name != "fee_cents"}

    async with platform.engine.connect() as connection:
        with pytest.raises(ValueError, match="naive"):
            await statement.execute(connection, [row, naive], [held, held])
        with pytest.raises(MissingColumnError, match="row 1 for bookings lacks channel"):
            await statement.execute(connection, [row, stray], [held, held])
        with pytest.raises(MissingColumnError, match="row 0 for bookings lacks fee_cents"):
            await statement.execute(connection, [lacking], [held])
        with pytest.raises(ValueError, match="naive"):
            await statement.execute(
                connection, [row], [held | {"created_at": naive["hold_expires_at"]}]
            )

    async with platform.ports.sessions() as session:
        assert (await session.get(BookingRow, "refused-0")) is None


@pytest.mark.postgres
@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
async def test_a_value_longer_than_its_column_is_refused_not_cut_short(platform):
    # Core's insert has PostgreSQL refuse a string longer than its column; read from the JSON
    # document, the value must meet the same check (a cast to VARCHAR(n) would cut it short).
    row, held, statement = await a_lone_statement(platform, "long-0")
    long_key = row | {"idempotency_key": "k" * 101}

    async with platform.engine.connect() as connection:
        with pytest.raises(DBAPIError, match="too long"):
            await statement.execute(connection, [long_key], [held])

    async with platform.ports.sessions() as session:
        assert (await session.get(BookingRow, "long-0")) is None
