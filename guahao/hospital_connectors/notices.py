"""Hands canonical notices to the platform's ``HospitalFeed`` (the one way in for every kind)."""

from __future__ import annotations

from guahao.hospital_connectors.canonical import (
    CancelNotice,
    CapacityNotice,
    CheckInNotice,
    FilingNotice,
    Notice,
    StopNotice,
)
from guahao.platform.services.hospital_actions import HospitalActions
from guahao.platform.services.hospital_feed import HospitalFeed

__all__ = ["apply_notice"]


async def apply_notice(
    feed: HospitalFeed,
    hospital_code: str,
    notice: Notice,
    actions: HospitalActions | None = None,
) -> str:
    """Apply one notice for ``hospital_code``; returns a short account of what it did.

    Every notice is idempotent here (a repeated stop, check-in or filing changes nothing
    more), so a message delivered twice is safe even before the message log sees it."""
    if isinstance(notice, StopNotice):
        ended = await feed.stop_session(hospital_code, notice.key, notice.reason)
        return f"session stopped, {len(ended)} bookings cancelled"
    if isinstance(notice, CancelNotice):
        if actions is None:
            raise TypeError("a booking cancellation needs the hospital actions")
        booking = await actions.cancel_by_hospital(
            notice.booking_id,
            reason=notice.reason,
            hospital_id=await feed.hospital_id(hospital_code),
        )
        return f"booking {booking.id} {booking.status.value}"
    if isinstance(notice, CheckInNotice):
        status = await feed.check_in(hospital_code, notice.booking_id)
        return f"booking {notice.booking_id} {status}"
    if isinstance(notice, FilingNotice):
        await feed.record_filing(hospital_code, notice.result)
        return f"booking {notice.result.booking_id} filing {notice.result.status}"
    if isinstance(notice, CapacityNotice):
        session_id = await feed.find_session(hospital_code, notice.key)
        if notice.add_units:
            capacity = await feed.add_units(hospital_code, session_id, notice.add_units)
            return f"session {session_id}: {notice.add_units} units added ({capacity})"
        assert notice.capacity is not None
        slot_id = await feed.slot_of(session_id, notice.segment)
        online = await feed.set_slot_capacity(slot_id, notice.capacity)
        return f"slot {slot_id}: capacity {notice.capacity} ({online} online)"
    raise TypeError(f"unknown notice {notice!r}")
