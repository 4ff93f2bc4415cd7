"""Knowing an ID number is not enough (issue 14, docs/identity.md): a relation to a person
someone has proven is made only with the code sent to the person's phone on file; until then
the patient cannot be booked for and shows nothing of the person's record; the real person,
proven, takes their identity back from accounts that hold it without proof."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

import pytest
from sqlalchemy import select, text

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.identity_documents import IdentityDocument
from guahao.platform.identity_verification import Verification, VerificationLevel
from guahao.platform.persistence.tables import AccountRow, NotificationRow, PatientRow
from guahao.platform.person_names import PersonName
from guahao.platform.services.accounts import AccountService, PatientView
from guahao.platform.services.relation_codes import RelationCodes
from tests.fixtures.platforms import (
    assert_refused,
    hold,
    new_account,
    publish_clinic,
    resident_id,
)

CHILD_ID = "110105202001010015"  # born 2020-01-01: a minor at the scenarios' time


class Phones:
    """A notifier that keeps the text messages it was asked to send (the embedded kind of
    adapter a demo uses, not an imitation of a service the test depends on)."""

    def __init__(self) -> None:
        self.sent: list[Mapping[str, str]] = []

    async def notify(self, *, account_id: str, template: str, params: Mapping[str, str]) -> None:
        self.sent.append(params)

    def last_code_to(self, phone: str) -> str:
        message = next(m for m in reversed(self.sent) if m["phone"] == phone)
        found = re.search(r"(\d{6})", message["en"])
        assert found
        return found.group(1)


class Register:
    """A verification port that knows some people (as the government service would): the name
    matches the number only for those it holds."""

    name = "register"

    def __init__(self, people: Mapping[str, str]) -> None:
        self._people = dict(people)

    async def verify(
        self, document: IdentityDocument, name: PersonName, *, checked_at: datetime
    ) -> Verification:
        matched = self._people.get(document.number) == name.value
        return Verification(
            level=(
                VerificationLevel.NAME_MATCHED_GOVERNMENT
                if matched
                else VerificationLevel.CHECKSUM_VALID
            ),
            verifier=self.name,
            checked_at=checked_at,
        )


VICTIM = resident_id(424_242)
PERSON_PHONE = "13900000042"


@pytest.fixture
def phones() -> Phones:
    return Phones()


@pytest.fixture
def with_port(platform: Platform, phones: Phones) -> AccountService:
    """The accounts service of a region whose verification port knows the victim."""
    return AccountService(
        platform.ports,
        platform.rules,
        verifier=Register({VICTIM: "李四"}),
        relation_codes=RelationCodes(platform.ports, platform.redis, phones, platform.rules),
    )


@pytest.fixture
def without_port(platform: Platform, phones: Phones) -> AccountService:
    """The same region's service with the embedded verifier (format and checksum only)."""
    return AccountService(
        platform.ports,
        platform.rules,
        relation_codes=RelationCodes(platform.ports, platform.redis, phones, platform.rules),
    )


async def add(
    service: AccountService, account: str, number: str, relation: str, name: str = "李四"
) -> PatientView:
    return await service.add_patient(
        account_id=account,
        name=name,
        document_type="resident_id",
        document_number=number,
        relation=relation,
    )


async def phone_of(platform: Platform, account_id: str) -> str:
    async with platform.ports.sessions() as session:
        row = await session.get(AccountRow, account_id)
        assert row is not None
        return platform.ports.vault.open("phone", row.phone_enc)


async def refused(code: str, awaitable: object) -> None:
    with pytest.raises(GuahaoError) as caught:
        await awaitable  # type: ignore[misc]
    assert caught.value.code == code, caught.value


async def test_a_proven_person_is_added_elsewhere_only_with_the_code_to_their_phone(
    platform: Platform, with_port: AccountService, phones: Phones
) -> None:
    victim, stranger = await new_account(platform), await new_account(platform)
    own = await add(with_port, victim, VICTIM, "self")
    assert own.proof == "name_matched"
    # knowing the number and the name is no longer enough
    pending = await add(with_port, stranger, VICTIM, "parent")
    assert pending.proof == "pending_code"
    victim_phone = await phone_of(platform, victim)
    assert pending.code_sent_to == victim_phone[:3] + "****" + victim_phone[-4:]
    # until the code is entered: no booking, no standing, no filings
    slot_id = (await publish_clinic(platform))[0]
    booking = await hold(platform, stranger, slot_id)
    await assert_refused(
        platform,
        "PATIENT_PROOF_PENDING",
        platform.bookings.choose_patient(
            account_id=stranger, booking_id=booking.id, patient_id=pending.id
        ),
    )
    await refused("PATIENT_PROOF_PENDING", platform.blacklist.standing(stranger, pending.id))
    await refused(
        "PATIENT_PROOF_PENDING",
        platform.filings.for_patient(account_id=stranger, patient_id=pending.id),
    )
    # a wrong code changes nothing; the code the person passes on makes the relation
    await refused(
        "PATIENT_PROOF_CODE_INVALID",
        with_port.confirm_patient(account_id=stranger, patient_id=pending.id, code="000000x"),
    )
    code = phones.last_code_to(victim_phone)
    proven = await with_port.confirm_patient(account_id=stranger, patient_id=pending.id, code=code)
    assert proven.proof == "code"
    await platform.bookings.choose_patient(
        account_id=stranger, booking_id=booking.id, patient_id=pending.id
    )


async def test_a_proven_self_cannot_be_claimed_again_and_an_identity_change_needs_the_code(
    platform: Platform, with_port: AccountService, phones: Phones
) -> None:
    victim, thief = await new_account(platform), await new_account(platform)
    await add(with_port, victim, VICTIM, "self")
    await refused("PERSON_IS_SELF_ELSEWHERE", add(with_port, thief, VICTIM, "self"))
    # adding someone else, then changing the identity to the victim's, is the same question
    other = await add(with_port, thief, resident_id(5_151), "other", name="王五")
    changed = await with_port.change_identity(
        account_id=thief,
        patient_id=other.id,
        name="李四",
        document_type="resident_id",
        document_number=VICTIM,
    )
    assert changed.proof == "pending_code"
    assert phones.sent[-1]["phone"] == await phone_of(platform, victim)
    await refused("PATIENT_PROOF_PENDING", platform.blacklist.standing(thief, other.id))


async def test_the_real_person_takes_their_identity_back(
    platform: Platform, with_port: AccountService, without_port: AccountService
) -> None:
    thief, accomplice, victim = [await new_account(platform) for _ in range(3)]
    # before anyone proves the person, a number is enough (format and checksum only)
    stolen = await add(without_port, thief, VICTIM, "self")
    assert stolen.proof == "declared"
    await add(without_port, accomplice, VICTIM, "parent")
    await refused("PERSON_IS_SELF_ELSEWHERE", add(without_port, victim, VICTIM, "self"))
    # the real person, name matched by the port, claims 本人
    claimed = await add(with_port, victim, VICTIM, "self")
    assert claimed.proof == "name_matched"
    assert await with_port.patients(thief) == []
    assert await with_port.patients(accomplice) == []
    for account in (thief, accomplice):
        inbox = await with_port.notifications(account)
        assert [n.topic for n in inbox] == ["patient.identity_reclaimed"]
        assert "claimed" in inbox[0].params["en"]
        assert inbox[0].params["name"] == "李*"  # masked as the document: the inbox is stored
    async with platform.engine.connect() as connection:
        stored = (await connection.execute(text("SELECT params FROM notifications"))).all()
    assert stored
    assert all("李四" not in str(row[0]) for row in stored)
    # and the number cannot be added back without the code
    again = await add(without_port, thief, VICTIM, "parent")
    assert again.proof == "pending_code"


async def test_a_strangers_pending_claim_of_self_does_not_stop_the_real_persons_own(
    platform: Platform, with_port: AccountService, phones: Phones
) -> None:
    mother, stranger, person = [await new_account(platform) for _ in range(3)]
    # the person's mother has proven them (the port matched the name), with their phone
    proven = await with_port.add_patient(
        account_id=mother,
        name="李四",
        document_type="resident_id",
        document_number=VICTIM,
        relation="parent",
        phone=PERSON_PHONE,
    )
    assert proven.proof == "name_matched"
    # a stranger claims 本人 first: it waits for the code sent to the person's phone
    claim = await add(with_port, stranger, VICTIM, "self")
    assert claim.proof == "pending_code"
    # the real person claims 本人 too, and is told nothing of the stranger
    own = await add(with_port, person, VICTIM, "self")
    assert own.proof == "pending_code"
    assert own.code_sent_to == "139****0042"
    code = phones.last_code_to(PERSON_PHONE)
    taken = await with_port.confirm_patient(account_id=person, patient_id=own.id, code=code)
    assert taken.proof == "code"
    assert [p.id for p in await with_port.patients(person)] == [own.id]
    assert await with_port.notifications(person) == []
    # the stranger's claim is gone, and they are told (not by whom)
    assert await with_port.patients(stranger) == []
    inbox = await with_port.notifications(stranger)
    assert [n.topic for n in inbox] == ["patient.identity_reclaimed"]
    assert person not in repr(inbox[0].params)
    await refused(
        "PATIENT_NOT_FOUND",
        with_port.confirm_patient(account_id=stranger, patient_id=claim.id, code=code),
    )
    # and 本人 is now proven: nobody else can claim it
    await refused("PERSON_IS_SELF_ELSEWHERE", add(with_port, stranger, VICTIM, "self"))


async def test_a_guardian_adds_a_minor_without_a_code(
    platform: Platform, with_port: AccountService
) -> None:
    mother, father = await new_account(platform), await new_account(platform)
    for account in (mother, father):
        child = await add(with_port, account, CHILD_ID, "child", name="小明")
        assert child.proof == "guardian"
    # an adult is nobody's guardian-declared child: the ordinary rules apply
    adult = await add(with_port, mother, resident_id(6_161), "child", name="赵六")
    assert adult.proof == "declared"
    async with platform.ports.sessions() as session:
        proofs = set(
            await session.scalars(select(PatientRow.proof).where(PatientRow.account_id == mother))
        )
        assert proofs == {"guardian", "declared"}
        assert (await session.scalars(select(NotificationRow))).first() is None
