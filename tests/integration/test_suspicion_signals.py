"""Anti-scalping (黄牛) suspicion signals, from real bookings through the real outbox.

Each test is named after the signal it shows; the authority lists and reviews them.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode
from guahao.platform.persistence.tables import AuditRow, BookingRow, SuspicionSignalRow
from guahao.platform.services.staff import StaffRole
from guahao.platform.services.suspicion import SuspicionDetector
from guahao.platform.suspicion_rules import SuspicionRules
from tests.fixtures.databases import sqlite_url_in
from tests.fixtures.platforms import (
    SESSION_DAY,
    add_confirmed,
    at_local,
    clinic,
    manual_clock,
    new_account,
    new_patient,
    publish_clinic,
    resident_id,
)
from tests.fixtures.platforms import _open as open_test_platform

MODE = PaymentMode.PAY_AT_HOSPITAL


@pytest.fixture
async def sqlite_platform(
    migrated_sqlite_template: Path, redis_url: str, tmp_path: Path
) -> AsyncIterator[Platform]:
    """SQLite only, cloned from the migrated template (the shared fixture migrates each time,
    which costs more than most of these scenarios)."""
    (tmp_path / "db").mkdir()
    shutil.copyfile(migrated_sqlite_template, tmp_path / "db" / "guahao.db")
    async for opened in open_test_platform(
        tmp_path, sqlite_url_in(tmp_path / "db"), redis_url, migrate=False
    ):
        yield opened


async def book(
    platform: Platform,
    account_id: str,
    patient_id: str,
    slot_id: str,
    client: ClientContext | None = None,
) -> str:
    booking = await platform.bookings.hold(
        account_id=account_id,
        slot_id=slot_id,
        idempotency_key=f"k-{account_id}-{slot_id}-{platform.ports.clock.now().timestamp()}",
        client=client,
    )
    await platform.bookings.choose_patient(
        account_id=account_id, booking_id=booking.id, patient_id=patient_id
    )
    await platform.bookings.submit(account_id=account_id, booking_id=booking.id, channel="self_pay")
    return booking.id


async def deliver(platform: Platform) -> None:
    for _ in range(10):
        if not await platform.dispatcher.dispatch_pending():
            break


async def signals(platform: Platform, kind: str) -> list[SuspicionSignalRow]:
    async with platform.ports.sessions() as session:
        rows = await session.scalars(
            select(SuspicionSignalRow)
            .where(SuspicionSignalRow.kind == kind)
            .order_by(SuspicionSignalRow.detected_at)
        )
        return list(rows.all())


async def cancel_and_rebook(platform: Platform, seconds_after_return: float) -> tuple[str, str]:
    """A scalper's account books a one-unit slot and cancels; an unrelated account books the
    unit ``seconds_after_return`` after it is back in the pool. (scalper, cancelled booking)"""
    slots = await publish_clinic(platform, clinic(MODE, units=1))
    clock = manual_clock(platform)
    clock.set(at_local(SESSION_DAY - timedelta(days=3), 9))
    scalper, buyer = await new_account(platform), await new_account(platform)
    scalper_patient = await new_patient(platform, scalper)
    buyer_patient = await new_patient(platform, buyer, name="王五")
    first = await book(platform, scalper, scalper_patient, slots[0])
    clock.advance(hours=2)
    await platform.bookings.cancel(account_id=scalper, booking_id=first)
    async with platform.ports.sessions() as session:
        row = await session.get(BookingRow, first)
        assert row is not None
        assert row.unit_returns_at is not None
    clock.set(row.unit_returns_at + timedelta(seconds=seconds_after_return))
    await book(platform, buyer, buyer_patient, slots[0])
    await deliver(platform)
    return scalper, first


async def test_cancel_rebook_within_seconds_by_an_unrelated_account_is_a_signal(
    platform: Platform,
) -> None:
    scalper, cancelled = await cancel_and_rebook(platform, seconds_after_return=3)
    found = await signals(platform, "cancel_rebook")
    assert len(found) == 1
    signal = found[0]
    assert (signal.subject_type, signal.subject_id) == ("account", scalper)
    assert signal.detail["cancelled_booking_id"] == cancelled
    assert signal.detail["seconds_after_return"] == 3
    assert signal.score == 1
    # the same events delivered again record nothing new
    detector = SuspicionDetector(platform.ports)
    platform.dispatcher.subscribe("booking.", detector, name="again", starts_at="beginning")
    await deliver(platform)
    assert len(await signals(platform, "cancel_rebook")) == 1


async def test_cancel_rebook_minutes_later_is_not_a_signal(sqlite_platform: Platform) -> None:
    await cancel_and_rebook(sqlite_platform, seconds_after_return=600)
    assert await signals(sqlite_platform, "cancel_rebook") == []


async def test_one_account_booking_for_many_persons_is_a_signal(sqlite_platform: Platform) -> None:
    platform = sqlite_platform
    rules = SuspicionRules(persons_per_account=2)

    async def source() -> SuspicionRules:
        return rules

    platform.dispatcher.subscribe(
        "booking.", SuspicionDetector(platform.ports, source), name="t", starts_at="beginning"
    )
    slots = await publish_clinic(platform, clinic(MODE, units=4))
    manual_clock(platform).set(at_local(SESSION_DAY - timedelta(days=3), 9))
    account = await new_account(platform)
    for n, slot in enumerate(slots[:4]):
        patient = (
            await add_confirmed(
                platform,
                account,
                name=f"张{'一二三四'[n]}",
                document_type="resident_id",
                document_number=resident_id(90_000 + n),
                relation="other",
            )
        ).id
        await book(platform, account, patient, slot)
        await deliver(platform)
        found = await signals(platform, "account_many_persons")
        if n < 2:
            assert found == [], n
        else:
            assert len(found) == 1
            assert found[0].subject_id == account
            assert found[0].score == n + 1  # the open signal grows with the pattern
    # a family below the default threshold raises nothing under the defaults
    assert SuspicionRules().persons_per_account >= 6


async def test_many_accounts_behind_one_device_is_a_signal(sqlite_platform: Platform) -> None:
    platform = sqlite_platform
    slots = await publish_clinic(platform, clinic(MODE, units=4))
    manual_clock(platform).set(at_local(SESSION_DAY - timedelta(days=3), 9))
    device = platform.ports.vault.index("device", "phone-of-a-scalper")
    threshold = SuspicionRules().accounts_per_device
    for n in range(threshold + 1):
        account = await new_account(platform)
        patient = await new_patient(platform, account)
        await book(platform, account, patient, slots[n % len(slots)], ClientContext("", device))
        manual_clock(platform).advance(minutes=5)
    await deliver(platform)
    found = await signals(platform, "device_many_accounts")
    assert len(found) == 1
    assert (found[0].subject_type, found[0].subject_id) == ("device", device)
    assert found[0].detail["distinct_accounts"] == threshold + 1
    assert await signals(platform, "ip_many_accounts") == []


async def test_authority_lists_and_reviews_signals_auditors_only_read(
    sqlite_platform: Platform,
) -> None:
    platform = sqlite_platform
    await cancel_and_rebook(platform, seconds_after_return=1)
    await platform.staff.create(
        username="chief", password="long-password-1", role="authority_admin"
    )
    await platform.staff.create(
        username="reader", password="long-password-1", role="authority_auditor"
    )
    admin = await platform.staff.authenticate(username="chief", password="long-password-1")
    auditor = await platform.staff.authenticate(username="reader", password="long-password-1")
    listed = await platform.suspicion.list(auditor)
    assert [s.kind for s in listed] == ["cancel_rebook"]
    with pytest.raises(GuahaoError) as caught:
        await platform.suspicion.review(listed[0].id, "looked", auditor)
    assert caught.value.code == "STAFF_ROLE_REQUIRED"
    reviewed = await platform.suspicion.review(listed[0].id, "已转公安核查", admin)
    assert reviewed.reviewed_by == admin.username
    assert await platform.suspicion.list(auditor) == []
    assert [s.id for s in await platform.suspicion.list(auditor, reviewed=True)] == [reviewed.id]
    async with platform.ports.sessions() as session:
        audited = await session.scalar(
            select(func.count()).where(
                AuditRow.action == "signal.review", AuditRow.subject_id == reviewed.id
            )
        )
    assert audited == 1
    with pytest.raises(GuahaoError) as caught:
        await platform.suspicion.review("nope", "x", admin)
    assert caught.value.code == "SIGNAL_NOT_FOUND"
    assert admin.role is StaffRole.AUTHORITY_ADMIN
