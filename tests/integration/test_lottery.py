"""Lottery release (摇号) through time: mark before release, enter during the window, draw once
at random, serve the winners, open the rest first-come; on a real Redis and SQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from guahao.platform.errors import GuahaoError
from guahao.platform.hospitals import PaymentMode, Period
from guahao.platform.persistence.tables import (
    BookingRow,
    LotteryEntryRow,
    OutboxRow,
    SlotRow,
)
from tests.fixtures.platforms import (
    SESSION_DAY,
    assert_refused,
    counts,
    hold,
    manual_clock,
    new_account,
    new_patient,
)
from tests.integration.offer_scenarios import (
    ban,
    bookings_of,
    deliver,
    messages,
    one_slot_clinic,
    publish,
    session_on,
    set_region_rules,
    slots_of,
)

LATER = SESSION_DAY + timedelta(days=7)
"""A session released on SESSION_DAY at 08:00, still ahead at scenario start."""


async def lottery_session(platform, *, units=2, mode=PaymentMode.PAY_AT_HOSPITAL, periods=None):
    periods = periods or (Period.MORNING,)
    spec = one_slot_clinic(mode, units=units, sessions=tuple((LATER.weekday(), p) for p in periods))
    await publish(platform, spec, [LATER])
    sess = await session_on(platform, LATER)
    view = await platform.lottery.mark_lottery(sess.id)
    return sess, view


async def entrant(platform, session_id, **kwargs):
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    entry = await platform.lottery.enter(
        account_id=account, patient_id=patient, session_id=session_id, **kwargs
    )
    return account, patient, entry


async def entry_row(platform, entry_id) -> LotteryEntryRow:
    async with platform.ports.sessions() as session:
        found = await session.get(LotteryEntryRow, entry_id)
        assert found is not None
        return found


def at(platform, instant):
    manual_clock(platform).set(instant)


async def test_a_lottery_session_refuses_ordinary_holds_until_it_is_drawn(platform):
    sess, view = await lottery_session(platform)
    [slot] = await slots_of(platform, sess.id)
    assert (view.opens_at, view.draw_at) == (sess.release_at - timedelta(hours=24), sess.release_at)
    assert (await counts(platform, slot)).status == "lottery"
    at(platform, sess.release_at + timedelta(seconds=1))  # released, but not drawn yet
    stranger = await new_account(platform)
    with pytest.raises(GuahaoError) as caught:
        await hold(platform, stranger, slot)
    assert caught.value.code == "SESSION_IS_LOTTERY"
    assert (await counts(platform, slot)).held == 0


async def test_units_are_drawn_among_the_entries_and_losers_wait_in_drawn_order(platform):
    sess, view = await lottery_session(platform, units=2)
    [slot] = await slots_of(platform, sess.id)
    at(platform, view.opens_at)
    people = [await entrant(platform, sess.id) for _ in range(5)]
    assert await platform.lottery.draw_due() == 0  # not yet time
    at(platform, view.draw_at)
    assert await platform.lottery.draw_due() == 1
    await deliver(platform)
    statuses = [(await entry_row(platform, e.id)).status for _, _, e in people]
    assert sorted(statuses) == ["lost", "lost", "lost", "won", "won"]
    async with platform.ports.sessions() as session:
        drawn = await session.scalar(select(OutboxRow).where(OutboxRow.topic == "lottery.drawn"))
        assert drawn is not None
    order = drawn.payload["order"]
    assert len(bytes.fromhex(drawn.payload["seed"])) == 32
    for account, _, entry in people:
        row = await entry_row(platform, entry.id)
        found = await bookings_of(platform, account)
        if row.status == "won":
            assert [(b.kind, b.status) for b in found] == [("lottery", "confirmed")]
            assert order.index(entry.id) < 2
            assert "lottery.won" in [m.template for m in await messages(platform, account)]
        else:
            assert found == []
            [wait] = await platform.waitlist.waits(account)
            # The drawn order continues as the order of the line.
            assert wait.position == order.index(entry.id) - 1
            assert "lottery.lost" in [m.template for m in await messages(platform, account)]
    snap = await counts(platform, slot)
    assert (snap.status, snap.booked, snap.available) == ("open", 2, 0)
    async with platform.ports.sessions() as session:
        assert (await session.get(SlotRow, slot)).online_booked == 2  # type: ignore[union-attr]


async def test_what_the_draw_leaves_opens_first_come_at_once(platform):
    sess, view = await lottery_session(platform, units=3)
    [slot] = await slots_of(platform, sess.id)
    at(platform, view.opens_at)
    await entrant(platform, sess.id)
    at(platform, view.draw_at)
    await platform.lottery.draw_due()
    stranger = await new_account(platform)
    await hold(platform, stranger, slot)
    snap = await counts(platform, slot)
    assert (snap.booked, snap.held, snap.available) == (1, 1, 1)


async def test_a_draw_runs_once_however_often_it_is_asked(platform):
    sess, view = await lottery_session(platform, units=2)
    at(platform, view.opens_at)
    for _ in range(4):
        await entrant(platform, sess.id)
    at(platform, view.draw_at)
    done = await asyncio.gather(
        platform.lottery.draw(sess.id), platform.lottery.draw(sess.id), platform.lottery.draw_due()
    )
    assert sum(done) == 1
    await platform.lottery.draw_due()
    async with platform.ports.sessions() as session:
        draws = await session.scalar(select(func.count()).where(OutboxRow.topic == "lottery.drawn"))
        won = await session.scalar(
            select(func.count()).select_from(BookingRow).where(BookingRow.kind == "lottery")
        )
    assert (draws, won) == (1, 2)


async def test_a_person_the_rules_refuse_at_the_draw_is_ineligible_and_others_are_served(
    platform,
):
    sess, view = await lottery_session(platform, units=2)
    [slot] = await slots_of(platform, sess.id)
    at(platform, view.opens_at)
    _, banned_patient, banned = await entrant(platform, sess.id)
    fine_account, _, fine = await entrant(platform, sess.id)
    await ban(platform, banned_patient)
    at(platform, view.draw_at)
    await platform.lottery.draw_due()
    refused = await entry_row(platform, banned.id)
    assert refused.status == "ineligible"
    assert "PATIENT_BLACKLISTED" in refused.detail
    assert (await entry_row(platform, fine.id)).status == "won"
    assert len(await bookings_of(platform, fine_account)) == 1
    snap = await counts(platform, slot)
    assert (snap.booked, snap.available, snap.status) == (1, 1, "open")


async def test_winners_at_a_hospital_taking_payment_online_are_held_and_told_to_pay(platform):
    sess, view = await lottery_session(platform, units=1, mode=PaymentMode.ONLINE_SELF_PAY)
    at(platform, view.opens_at)
    account, _, _ = await entrant(platform, sess.id)
    at(platform, view.draw_at)
    await platform.lottery.draw_due()
    await deliver(platform)
    [won] = await bookings_of(platform, account)
    assert (won.kind, won.status) == ("lottery", "awaiting_payment")
    assert "booking.awaiting_payment" in [m.template for m in await messages(platform, account)]


async def test_an_entry_withdrawn_before_the_draw_takes_no_part(platform):
    sess, view = await lottery_session(platform, units=1)
    at(platform, view.opens_at)
    account, _, entry = await entrant(platform, sess.id)
    withdrawn = await platform.lottery.withdraw(account_id=account, entry_id=entry.id)
    assert withdrawn.status == "withdrawn"
    at(platform, view.draw_at)
    await platform.lottery.draw_due()
    assert await bookings_of(platform, account) == []
    assert (await entry_row(platform, entry.id)).status == "withdrawn"
    assert [e.status for e in await platform.lottery.entries(account)] == ["withdrawn"]


async def test_a_rebuilt_pool_is_closed_again_by_the_sweep_before_the_draw(platform):
    sess, _view = await lottery_session(platform)
    [slot] = await slots_of(platform, sess.id)
    await platform.inventory_sync.rebuild_all()
    await platform.lottery.draw_due()
    assert (await counts(platform, slot)).status == "lottery"


# ------------------------------------------------------------------ refusals


async def test_a_first_come_session_takes_no_lottery_entries(platform):
    spec = one_slot_clinic(sessions=((LATER.weekday(), Period.MORNING),))
    await publish(platform, spec, [LATER])
    sess = await session_on(platform, LATER)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "SESSION_NOT_LOTTERY",
        platform.lottery.enter(account_id=account, patient_id=patient, session_id=sess.id),
    )


async def test_entries_are_taken_only_during_the_window(platform):
    sess, view = await lottery_session(platform)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    at(platform, view.opens_at - timedelta(seconds=1))
    await assert_refused(
        platform,
        "LOTTERY_NOT_OPEN",
        platform.lottery.enter(account_id=account, patient_id=patient, session_id=sess.id),
    )
    at(platform, view.draw_at)  # due, not yet drawn: too late all the same
    await assert_refused(
        platform,
        "LOTTERY_NOT_OPEN",
        platform.lottery.enter(account_id=account, patient_id=patient, session_id=sess.id),
    )


async def test_a_person_enters_a_draw_once(platform):
    sess, view = await lottery_session(platform)
    at(platform, view.opens_at)
    account, patient, _ = await entrant(platform, sess.id)
    await assert_refused(
        platform,
        "LOTTERY_ALREADY_ENTERED",
        platform.lottery.enter(account_id=account, patient_id=patient, session_id=sess.id),
    )


async def test_a_person_enters_only_so_many_draws_for_one_visit_day(platform):
    sess, view = await lottery_session(
        platform, periods=(Period.MORNING, Period.AFTERNOON, Period.EVENING)
    )
    others = [await session_on(platform, LATER, p) for p in ("afternoon", "evening")]
    for other in others:
        await platform.lottery.mark_lottery(other.id)
    at(platform, view.opens_at)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    limit = (await platform.lottery.rules_for(sess.hospital_id)).max_entries_per_person_per_day
    assert limit == 2
    for target in (sess, others[0]):
        await platform.lottery.enter(account_id=account, patient_id=patient, session_id=target.id)
    await assert_refused(
        platform,
        "LOTTERY_ENTRY_LIMIT_REACHED",
        platform.lottery.enter(account_id=account, patient_id=patient, session_id=others[1].id),
    )


async def test_after_the_draw_an_entry_can_no_longer_change(platform):
    sess, view = await lottery_session(platform, units=1)
    at(platform, view.opens_at)
    account, _patient, entry = await entrant(platform, sess.id)
    at(platform, view.draw_at)
    await platform.lottery.draw_due()
    await assert_refused(
        platform,
        "LOTTERY_ALREADY_DRAWN",
        platform.lottery.withdraw(account_id=account, entry_id=entry.id),
    )
    other = await new_account(platform)
    other_patient = await new_patient(platform, other)
    await assert_refused(
        platform,
        "LOTTERY_ALREADY_DRAWN",
        platform.lottery.enter(account_id=other, patient_id=other_patient, session_id=sess.id),
    )


async def test_another_accounts_entry_is_not_found(platform):
    sess, view = await lottery_session(platform)
    at(platform, view.opens_at)
    _, _, entry = await entrant(platform, sess.id)
    stranger = await new_account(platform)
    await assert_refused(
        platform,
        "LOTTERY_ENTRY_NOT_FOUND",
        platform.lottery.withdraw(account_id=stranger, entry_id=entry.id),
    )


async def test_the_window_opens_before_the_draw_and_the_draw_comes_before_the_session(
    platform,
):
    spec = one_slot_clinic(sessions=((LATER.weekday(), Period.MORNING),))
    await publish(platform, spec, [LATER])
    sess = await session_on(platform, LATER)
    for opens, draw in (
        (sess.release_at, sess.release_at),
        (sess.release_at - timedelta(hours=1), sess.starts_at + timedelta(minutes=1)),
        (None, platform.ports.clock.now() - timedelta(minutes=1)),
    ):
        await assert_refused(
            platform,
            "LOTTERY_WINDOW_INVALID",
            platform.lottery.mark_lottery(sess.id, opens_at=opens, draw_at=draw),
        )


async def test_a_released_session_cannot_become_a_lottery(platform):
    spec = one_slot_clinic(sessions=((SESSION_DAY.weekday(), Period.MORNING),))
    await publish(platform, spec, [SESSION_DAY])
    sess = await session_on(platform, SESSION_DAY)
    await assert_refused(
        platform,
        "LOTTERY_MARK_TOO_LATE",
        platform.lottery.mark_lottery(
            sess.id, draw_at=platform.ports.clock.now() + timedelta(hours=1)
        ),
    )


async def test_an_undrawn_lottery_session_cannot_be_waited_for(platform):
    sess, _view = await lottery_session(platform)
    account = await new_account(platform)
    patient = await new_patient(platform, account)
    await assert_refused(
        platform,
        "SESSION_IS_LOTTERY",
        platform.waitlist.join(
            account_id=account, patient_id=patient, scope="session", session_id=sess.id
        ),
    )


async def test_when_the_rules_say_so_losers_only_lose(platform):
    await set_region_rules(platform, {"lottery": {"losers_join_waitlist": False}})
    sess, view = await lottery_session(platform, units=1)
    at(platform, view.opens_at)
    people = [await entrant(platform, sess.id) for _ in range(3)]
    at(platform, view.draw_at)
    await platform.lottery.draw_due()
    lost = [a for a, _, e in people if (await entry_row(platform, e.id)).status == "lost"]
    assert len(lost) == 2
    for account in lost:
        assert await platform.waitlist.waits(account) == []


async def test_the_region_sets_the_default_window_before_the_release(platform):
    await set_region_rules(platform, {"lottery": {"window_hours": 6}})
    sess, view = await lottery_session(platform)
    assert view.opens_at == sess.release_at - timedelta(hours=6)
