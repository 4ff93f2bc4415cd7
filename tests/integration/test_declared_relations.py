"""What a declared relation may do (issue 14, docs/security.md): without a verification port a
relation is only declared, and knowing an ID number must not be enough to book in a person's
name and leave the no-show strikes on them. The account's own 本人 and a guardian's minor are
booked for at once; a declared relation to another adult only once the code sent to the phone
given for them is entered; on both databases, a real Redis and the embedded SMS console."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import AccountRow, PatientRow
from guahao.platform.services.accounts import PatientView
from tests.fixtures.platforms import (
    SESSION_DAY,
    SentTexts,
    assert_refused,
    hold,
    new_account,
    new_patient,
    publish_clinic,
    resident_id,
)
from tests.integration.offer_scenarios import (
    THURSDAY,
    advance,
    bookings_of,
    entry,
    one_slot_clinic,
    publish_week,
    sell_out,
    session_on,
)
from tests.integration.test_lottery import at, lottery_session
from tests.integration.test_prepaid_waits import ONLINE, settle
from tests.integration.test_rebooking_offers import TWO_DAYS

CHILD_ID = "110105202001010015"  # born 2020-01-01: a minor at the scenarios' time
MOTHER_PHONE = "13600000731"


async def add_mother(platform: Platform, account: str, phone: str = MOTHER_PHONE) -> PatientView:
    return await platform.accounts.add_patient(
        account_id=account,
        name="王芳",
        document_type="resident_id",
        document_number=resident_id(73_731),
        phone=phone,
        relation="parent",
    )


async def test_another_adult_is_booked_for_only_after_the_code_to_their_phone(platform):
    [slot_id, *_] = await publish_clinic(platform)
    account = await new_account(platform)
    await new_patient(platform, account)  # 本人
    with SentTexts.attached() as texts:
        mother = await add_mother(platform, account)
    assert (mother.proof, mother.bookable, mother.code_sent_to) == (
        "declared",
        False,
        "136****0731",
    )
    booking = await hold(platform, account, slot_id)
    await assert_refused(
        platform,
        "PATIENT_RELATION_UNCONFIRMED",
        platform.bookings.choose_patient(
            account_id=account, booking_id=booking.id, patient_id=mother.id
        ),
    )
    code = texts.code_to(MOTHER_PHONE)
    with pytest.raises(GuahaoError) as wrong:
        await platform.accounts.confirm_patient(
            account_id=account, patient_id=mother.id, code=f"{(int(code) + 1) % 1_000_000:06d}"
        )
    assert wrong.value.code == "PATIENT_PROOF_CODE_INVALID"
    confirmed = await platform.accounts.confirm_patient(
        account_id=account, patient_id=mother.id, code=code
    )
    assert (confirmed.proof, confirmed.bookable) == ("phone_code", True)
    chosen = await platform.bookings.choose_patient(
        account_id=account, booking_id=booking.id, patient_id=mother.id
    )
    assert chosen.patient_id == mother.id
    [listed] = [p for p in await platform.accounts.patients(account) if p.id == mother.id]
    assert (listed.proof, listed.bookable) == ("phone_code", True)


async def test_self_and_a_guardians_minor_are_booked_for_at_once(platform):
    [slot_id, *_] = await publish_clinic(platform)
    account = await new_account(platform)
    with SentTexts.attached() as texts:
        me = await platform.accounts.add_patient(
            account_id=account,
            name="李明",
            document_type="resident_id",
            document_number=resident_id(73_732),
            relation="self",
        )
        child = await platform.accounts.add_patient(
            account_id=account,
            name="李小明",
            document_type="resident_id",
            document_number=CHILD_ID,
            relation="child",
        )
    assert (me.proof, me.bookable) == ("declared", True)
    assert (child.proof, child.bookable) == ("guardian", True)
    assert texts.lines == []  # no code asked of either
    booking = await hold(platform, account, slot_id)
    for patient in (me, child):
        chosen = await platform.bookings.choose_patient(
            account_id=account, booking_id=booking.id, patient_id=patient.id
        )
        assert chosen.patient_id == patient.id


async def test_an_unconfirmed_relation_cannot_wait_or_enter_a_lottery(platform):
    account = await new_account(platform)
    await new_patient(platform, account)
    mother = await add_mother(platform, account)
    sess, view = await lottery_session(platform)
    at(platform, view.opens_at)
    await assert_refused(
        platform,
        "PATIENT_RELATION_UNCONFIRMED",
        platform.lottery.enter(account_id=account, patient_id=mother.id, session_id=sess.id),
    )
    await publish_week(platform, one_slot_clinic(code="h2"))
    ordinary = await session_on(platform, SESSION_DAY)
    await assert_refused(
        platform,
        "PATIENT_RELATION_UNCONFIRMED",
        platform.waitlist.join(
            account_id=account, patient_id=mother.id, scope="session", session_id=ordinary.id
        ),
    )


async def test_a_rebooking_offer_is_not_taken_for_an_unconfirmed_relation(platform):
    """A relation declared before the rule, booked then, and its booking cancelled by the
    hospital: the offer cannot make a new unit the person's until the relation is confirmed."""
    await publish_week(platform, one_slot_clinic(ONLINE, sessions=TWO_DAYS))
    [(account, booking_id)] = await sell_out(platform, (await session_on(platform, THURSDAY)).id)
    await platform.bookings.cancel_by_hospital(booking_id, reason="doctor away")
    await settle(platform)
    [offer] = await platform.rebooking.offers(account)
    async with platform.ports.sessions() as session, session.begin():
        await session.execute(
            update(PatientRow)
            .where(PatientRow.id == offer.patient_id)
            .values(relation="parent", proof="declared")
        )
    await assert_refused(
        platform,
        "PATIENT_RELATION_UNCONFIRMED",
        platform.rebooking.accept(
            account_id=account, offer_id=offer.id, slot_id=offer.proposals[0].slot_id
        ),
    )


async def test_a_wait_from_before_the_rule_is_not_served_to_an_unconfirmed_relation(platform):
    """A wait joined for a relation declared before the rule: when a unit comes back it goes
    to the next waiter, and the wait keeps its place until the relation is confirmed."""
    await publish_week(platform, one_slot_clinic())
    sess = await session_on(platform, SESSION_DAY)
    [(holder, booking_id)] = await sell_out(platform, sess.id)
    first = await new_account(platform)
    first_patient = await new_patient(platform, first)
    first_wait = await platform.waitlist.join(
        account_id=first, patient_id=first_patient, scope="session", session_id=sess.id
    )
    advance(platform, minutes=1)  # the first in line
    second = await new_account(platform)
    second_patient = await new_patient(platform, second)
    await platform.waitlist.join(
        account_id=second, patient_id=second_patient, scope="session", session_id=sess.id
    )
    async with platform.ports.sessions() as session, session.begin():
        # the first waiter's patient as a relation declared before the rule looks
        await session.execute(
            update(PatientRow)
            .where(PatientRow.id == first_patient)
            .values(relation="parent", proof="declared")
        )
    await platform.bookings.cancel(account_id=holder, booking_id=booking_id)
    await settle(platform)
    assert await bookings_of(platform, first) == []
    [served] = await bookings_of(platform, second)
    assert (served.kind, served.patient_id) == ("waitlist", second_patient)
    assert (await entry(platform, first_wait.id)).status == "waiting"


async def test_a_patient_added_again_past_the_codes_allowance_is_not_kept(platform):
    """The code's allowance is counted before the row is committed: adding a patient again
    after its codes ran out answers ``RATE_LIMITED`` and leaves the patient removed, instead
    of an error in front of a pending patient."""
    account = await new_account(platform)
    await new_patient(platform, account)
    mother = await add_mother(platform, account)  # the first code of the minute
    await assert_refused(
        platform,
        "RATE_LIMITED",
        platform.accounts.resend_patient_code(account_id=account, patient_id=mother.id),
    )
    await platform.accounts.remove_patient(account_id=account, patient_id=mother.id)
    await assert_refused(platform, "RATE_LIMITED", add_mother(platform, account))
    assert mother.id not in {p.id for p in await platform.accounts.patients(account)}


async def test_the_code_goes_to_the_persons_own_phone(platform):
    account = await new_account(platform)
    await new_patient(platform, account)
    async with platform.ports.sessions() as session:
        row = await session.get(AccountRow, account)
        assert row is not None
        own = platform.ports.vault.open("phone", row.phone_enc)
    await assert_refused(platform, "PATIENT_PHONE_NOT_OWN", add_mother(platform, account, own))
    # without a phone the person is added, but nothing can confirm the relation
    mother = await add_mother(platform, account, "")
    assert (mother.proof, mother.bookable, mother.code_sent_to) == ("declared", False, "")
    await assert_refused(
        platform,
        "PATIENT_PROOF_UNREACHABLE",
        platform.accounts.resend_patient_code(account_id=account, patient_id=mother.id),
    )
