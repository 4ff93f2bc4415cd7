"""Accounts (账号) and the patients (就诊人) each one manages, under the real-name rules.

A patient is one person seen from one account: the person is the identity document, found
again by a keyed hash of the part of its number that never changes, so the same person on two
accounts (a parent on each child's phone) is one person for limits and the blacklist. One
person can be the account holder (本人) of one account only; children without an ID card are
added by a guardian on the household register (户口簿). Documents and phones are sealed at rest
and shown masked. Passwords are hashed with scrypt (memory-hard, in the standard library).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.bookings import LIVE_WITH_PATIENT
from guahao.platform.client_context import ClientContext
from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.identity_documents import (
    DocumentType,
    IdentityDocument,
    age_on,
    parse_document_type,
    validate_document,
)
from guahao.platform.identity_verification import (
    FormatChecksumVerifier,
    IdentityVerifier,
    Verification,
    VerificationLevel,
)
from guahao.platform.ids import new_id
from guahao.platform.passwords import (
    hash_password,
    hash_password_off_loop,
    verify_password,
    verify_password_off_loop,
    verify_unknown_off_loop,
)
from guahao.platform.patient_proof import PROVEN, UNPROVEN, Proof, needs_phone_code
from guahao.platform.persistence.tables import (
    AccountRow,
    BookingRow,
    NotificationRow,
    PatientIdentityChangeRow,
    PatientRow,
    PersonRow,
)
from guahao.platform.person_names import validate_person_name
from guahao.platform.personal_data import (
    NAME_FIELD,
    PersonalDataVault,
    mask_name,
    mask_phone,
    patient_name,
)
from guahao.platform.phone_numbers import normalise_phone
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.sign_in_delays import SignInDelays

if TYPE_CHECKING:
    from guahao.platform.services.registrations import RegistrationCodes
    from guahao.platform.services.relation_codes import RelationCodes

__all__ = [
    "NO_PASSWORD",
    "RELATIONS",
    "AccountService",
    "NotificationView",
    "PatientView",
    "Relation",
    "account_id_by_phone",
    "add_account_without_password",
    "hash_password",
    "person_key",
    "verify_password",
]


NO_PASSWORD = "!no-password"
"""The password hash of an account made by a sign-in that needs no password (an SMS code, the
region's identity provider): not an scrypt hash, so no password matches it until the holder
sets one, and checking one against it costs what any other check costs."""


async def account_id_by_phone(
    session: AsyncSession, vault: PersonalDataVault, phone: str
) -> str | None:
    """The account registered with ``phone`` (eleven ASCII digits), found by its keyed hash."""
    found: str | None = await session.scalar(
        select(AccountRow.id).where(AccountRow.phone_hash == vault.index("phone", phone))
    )
    return found


def add_account_without_password(
    session: AsyncSession,
    vault: PersonalDataVault,
    phone: str,
    now: datetime,
    display_name: str = "",
) -> str:
    """Add an account for ``phone`` that signs in without a password; its id. The unique phone
    hash refuses a second one (``IntegrityError`` at flush or commit), so two sign-ins of one
    phone at the same moment make one account."""
    account_id = new_id()
    session.add(
        AccountRow(
            id=account_id,
            phone_hash=vault.index("phone", phone),
            phone_enc=vault.seal("phone", phone),
            password_hash=NO_PASSWORD,
            display_name=display_name[:100],
            created_at=now,
        )
    )
    return account_id


Relation = Literal["self", "spouse", "child", "parent", "sibling", "other"]
RELATIONS: frozenset[str] = frozenset(get_args(Relation))
REGION_ZONE = "Asia/Shanghai"
"""The region's calendar: birth dates and ages are judged on its day, not UTC's."""
ADULT_AGE = 18
"""Below it a person may be added by a declared guardian (relation ``child``) without a code."""
RECLAIMED_TEMPLATE = "patient.identity_reclaimed"
RECLAIMED_TEXT = (
    "就诊人 {name}（{document}）的证件已由本人认领，已从您的账号移除；已有的预约保留。",
    "The person {name} ({document}) has claimed their identity; the patient was removed "
    "from your account. Existing bookings stay.",
)


@dataclass(frozen=True)
class _CodeToSend:
    """Where the code for a pending relation goes, sent once the row is committed."""

    phone: str
    holder_account_id: str


def person_key(document: IdentityDocument) -> str:
    """What identifies the person behind a document, before hashing.

    A household register carries the child's resident identity number, so both name the same
    person; other documents are their own family. The holder part of the number leaves out
    what changes when a card is renewed.

    >>> from datetime import date
    >>> day = date(2026, 1, 1)
    >>> child = validate_document("household_register", "110105202001010015", today=day)
    >>> person_key(child) == person_key(validate_document("resident_id", child.number, today=day))
    True
    """
    family = document.type
    if family is DocumentType.HOUSEHOLD_REGISTER:
        family = DocumentType.RESIDENT_ID
    return f"{family.value}:{document.holder_number}"


class PatientView(msgspec.Struct, frozen=True, rename="camel"):
    """A patient as shown: masked, never the plain document or phone."""

    id: str
    name: str
    relation: str
    document_type: str
    document_masked: str
    phone_masked: str
    sex: str = ""
    verification_level: str = ""
    booked_by_guardian: bool = False
    proof: str = Proof.DECLARED.value
    """How the relation was established; ``pending_code``: enter the code sent to the
    person's phone on file (``codeSentTo``) before booking or reading their record;
    ``declared`` for anyone but 本人: enter the code sent to the phone given for them
    (``codeSentTo``) before booking for them (``bookable``)."""
    code_sent_to: str = ""
    bookable: bool = True
    """Whether a unit may be made this patient's now (docs/security.md)."""


class NotificationView(msgspec.Struct, frozen=True, rename="camel"):
    """A message in the account's inbox: ``topic`` names the template, ``params`` fill it."""

    id: str
    topic: str
    params: dict[str, Any]
    created_at: datetime


INBOX_PAGE = 100
"""The newest messages an inbox shows."""


class AccountService:
    """Register, sign in, and manage the patients of an account under the real-name rules."""

    def __init__(
        self,
        ports: Ports,
        rules: RuleBook | None = None,
        verifier: IdentityVerifier | None = None,
        delays: SignInDelays | None = None,
        relation_codes: RelationCodes | None = None,
        registrations: RegistrationCodes | None = None,
    ) -> None:
        self._p = ports
        self._registrations = registrations
        """Codes that complete a registration; ``None``: only ``register`` (tools) makes
        password accounts."""
        self._codes = relation_codes
        """Codes to a person's phone on file; ``None``: a relation needing one is refused."""
        self._delays = delays
        """Waits after wrong passwords; ``None`` only where nobody signs in (tools)."""
        self._rules = rules or RuleBook(ports)
        self._verifier: IdentityVerifier = verifier or FormatChecksumVerifier(REGION_ZONE)

    async def register(
        self,
        *,
        phone: str,
        password: str,
        display_name: str = "",
        client: ClientContext | None = None,
    ) -> str:
        """注册 at once, for tools and tests that own the phone: one account per phone
        (``ACCOUNT_EXISTS`` otherwise). Callers on the network go through
        ``request_registration`` and ``confirm_registration``, which tell nobody whether a
        phone has an account."""
        phone = await self._registration_allowed(phone, password, client)
        password_hash = await hash_password_off_loop(password)
        return await self._create(phone, password_hash, display_name)

    async def _registration_allowed(
        self, phone: str, password: str, client: ClientContext | None
    ) -> str:
        """The phone normalised, once the password's length and the address's allowance of
        registrations (bulk-made accounts multiply a scalper's holds) are checked."""
        phone = normalise_phone(phone)
        if len(password) < 8:
            refuse("VALIDATION_FAILED", field="password", reason="at least 8 characters")
        if self._p.limiter is not None and client is not None and client.ip_hash:
            limits = (await self._rules.region()).rate_limits
            await self._p.limiter.hit([("register:ip", limits.register_per_ip, client.ip_hash)])
        return phone

    async def request_registration(
        self,
        *,
        phone: str,
        password: str,
        display_name: str = "",
        client: ClientContext | None = None,
    ) -> str:
        """注册, first step: the same answer (the phone, masked) whether or not the phone has
        an account. A new phone gets a code that completes the registration; a registered one
        gets a message that someone tried, and how to sign in (``RegistrationCodes``)."""
        phone = await self._registration_allowed(phone, password, client)
        if self._registrations is None:
            refuse("VALIDATION_FAILED", field="phone", reason="registration by code not set up")
        password_hash = await hash_password_off_loop(password)
        async with self._p.sessions() as session:
            existing = await account_id_by_phone(session, self._p.vault, phone)
        await self._registrations.send(
            phone=phone,
            password_hash=password_hash,
            display_name=display_name[:100],
            account_id=existing,
        )
        return mask_phone(phone)

    async def confirm_registration(
        self, *, phone: str, code: str, client: ClientContext | None = None
    ) -> str:
        """注册, second step: the code sent to the phone makes the account. Whoever holds it
        owns the phone, so a phone registered meanwhile may be named (``ACCOUNT_EXISTS``)."""
        phone = normalise_phone(phone)
        if self._registrations is None:
            refuse("SIGN_IN_CODE_INVALID", field="code")
        if self._p.limiter is not None and client is not None:
            limits = (await self._rules.region()).rate_limits
            await self._p.limiter.hit(
                [("sign_in_attempt:ip", limits.sign_in_attempt_per_ip, client.ip_hash)]
            )
        pending = await self._registrations.take(phone, code)
        return await self._create(phone, pending.password_hash, pending.display_name)

    async def _create(self, phone: str, password_hash: str, display_name: str) -> str:
        account_id = new_id()
        try:
            async with self._p.sessions() as session, session.begin():
                session.add(
                    AccountRow(
                        id=account_id,
                        phone_hash=self._p.vault.index("phone", phone),
                        phone_enc=self._p.vault.seal("phone", phone),
                        password_hash=password_hash,
                        display_name=display_name,
                        created_at=self._p.clock.now(),
                    )
                )
        except IntegrityError:
            refuse("ACCOUNT_EXISTS")
        return account_id

    async def authenticate(
        self, *, phone: str, password: str, client: ClientContext | None = None
    ) -> str:
        """登录 by password. Wrong answers space out further attempts for the phone and the
        address (``SignInDelays``) but never lock the owner out; an unknown phone costs the
        same work as a known one, so neither the answer nor its time tells who has an account.
        """
        try:
            phone = normalise_phone(phone)
        except GuahaoError:
            phone = ""  # not a mobile number, so no account's: the same work follows
        phone_index = self._p.vault.index("phone", phone)
        address = client.ip_hash if client is not None else ""
        if self._delays is not None:
            await self._delays.check(phone_index, address)
        async with self._p.sessions() as session:
            row = await session.scalar(
                select(AccountRow).where(AccountRow.phone_hash == phone_index)
            )
        if row is None:  # the same work as a real check: timing does not tell who has an account
            await verify_unknown_off_loop(password)
            right = False
        else:
            right = await verify_password_off_loop(password, row.password_hash)
        if row is None or not right:
            delay = 0
            if self._delays is not None:
                delay = await self._delays.failed(phone_index, address)
            refuse("CREDENTIALS_INVALID", retry_after_seconds=delay)
        if self._delays is not None:
            await self._delays.succeeded(phone_index)
        return row.id

    def _today(self) -> date:
        return self._p.clock.now().astimezone(ZoneInfo(REGION_ZONE)).date()

    async def _identify(
        self, name: str, document_type: str, document_number: str, relation: str
    ) -> tuple[IdentityDocument, str]:
        """Validate everything about a patient's identity before anything is stored."""
        if relation not in RELATIONS:
            refuse("VALIDATION_FAILED", field="relation", allowed=sorted(RELATIONS))
        kind = parse_document_type(document_type)
        document = validate_document(kind, document_number, today=self._today())
        person_name = validate_person_name(name, kind)
        rules = (await self._rules.region()).identity
        if relation == "self":
            if kind.booked_by_guardian:
                refuse("PATIENT_TOO_YOUNG_FOR_SELF", field="relation", document_type=kind.value)
            if (
                document.birth_date is not None
                and age_on(document.birth_date, self._today()) < rules.self_min_age_years
            ):
                refuse(
                    "PATIENT_TOO_YOUNG_FOR_SELF",
                    field="relation",
                    min_age=rules.self_min_age_years,
                )
        return document, person_name.value

    async def add_patient(
        self,
        *,
        account_id: str,
        name: str,
        document_type: str,
        document_number: str,
        phone: str = "",
        relation: str = "self",
    ) -> PatientView:
        """添加就诊人: validated, verified as far as the verifier can, within the limits, and
        the relation proven as docs/identity.md says (``Proof``): a person someone has proven
        is reached through a code to their phone on file before the relation exists."""
        document, clean_name = await self._identify(name, document_type, document_number, relation)
        phone = normalise_phone(phone) if phone.strip() else ""
        now = self._p.clock.now()
        verification = await self._verifier.verify(
            document, validate_person_name(clean_name, document.type), checked_at=now
        )
        rules = (await self._rules.region()).identity
        document_hash = self._p.vault.index("document", person_key(document))
        try:
            async with self._p.sessions() as session, session.begin():
                await _lock_account(session, account_id)
                existing = await session.scalar(
                    select(PatientRow).where(
                        PatientRow.account_id == account_id,
                        PatientRow.document_hash == document_hash,
                    )
                )
                if existing is not None and existing.removed_at is None:
                    refuse("PATIENT_ALREADY_ADDED", patient_id=existing.id)
                live = await session.scalar(
                    select(func.count())
                    .select_from(PatientRow)
                    .where(PatientRow.account_id == account_id, PatientRow.removed_at.is_(None))
                )
                if (live or 0) >= rules.max_patients_per_account:
                    refuse("PATIENT_LIMIT_REACHED", limit=rules.max_patients_per_account)
                recent = await session.scalar(
                    select(func.count())
                    .select_from(PatientRow)
                    .where(
                        PatientRow.account_id == account_id,
                        PatientRow.created_at > now - timedelta(days=30),
                    )
                )
                if (recent or 0) >= rules.patient_additions_per_30_days:
                    refuse(
                        "PATIENT_ADDITIONS_TOO_FREQUENT",
                        limit=rules.patient_additions_per_30_days,
                    )
                if relation == "self":
                    has_self = await session.scalar(
                        select(PatientRow.id).where(
                            PatientRow.account_id == account_id,
                            PatientRow.relation == "self",
                            PatientRow.removed_at.is_(None),
                        )
                    )
                    if has_self is not None:
                        refuse("VALIDATION_FAILED", field="relation", reason="already has self")
                person = await self._person_for(session, document_hash, document, verification)
                proof, target = await self._proof_for(
                    session, account_id, person.id, relation, document, verification
                )
                if needs_phone_code(proof, relation):
                    target = await self._phone_to_confirm(session, account_id, phone)
                if relation == "self" and proof in PROVEN:
                    await self._take_back(session, account_id, person.id, now)
                row = existing or PatientRow(id=new_id(), account_id=account_id)
                row.proof = proof.value
                row.person_id = person.id
                row.clear_name = ""
                row.name_enc = self._p.vault.seal(NAME_FIELD, clean_name)
                row.relation = relation
                row.document_type = document.type.value
                row.document_hash = document_hash
                row.document_enc = self._p.vault.seal("document", document.number)
                row.document_masked = document.masked
                row.phone_enc = self._p.vault.seal("phone", phone) if phone else None
                row.phone_masked = mask_phone(phone) if phone else ""
                row.created_at = now
                row.removed_at = None
                if existing is None:
                    session.add(row)
                await self._allow_code(row.id, target)  # refused: nothing of this is kept
                await session.flush()
        except IntegrityError:
            # The partial unique index: this document is already 本人 of another account.
            refuse("PERSON_IS_SELF_ELSEWHERE", field="document_number")
        return _view(self._p.vault, row, person, await self._send_code(row.id, target, True))

    async def _person_for(
        self,
        session: AsyncSession,
        document_hash: str,
        document: IdentityDocument,
        verification: object,
    ) -> PersonRow:
        person = await session.scalar(
            select(PersonRow).where(PersonRow.document_hash == document_hash)
        )
        level = getattr(verification, "level", VerificationLevel.FORMAT_CHECKED)
        if person is None:
            person = PersonRow(
                id=new_id(),
                document_hash=document_hash,
                document_type=document.type.value,
                created_at=self._p.clock.now(),
                verification_level=VerificationLevel.FORMAT_CHECKED.value,
            )
            session.add(person)
        person.birth_date = document.birth_date
        person.sex = document.sex.value if document.sex else ""
        if VerificationLevel(level).rank > VerificationLevel(person.verification_level).rank:
            person.verification_level = VerificationLevel(level).value
            person.verified_by = str(getattr(verification, "verifier", ""))
            person.verified_at = getattr(verification, "checked_at", None)
        await session.flush()
        return person

    async def remove_patient(self, *, account_id: str, patient_id: str) -> None:
        """删除就诊人: never while the patient has a live booking (it would orphan it)."""
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            row = await self._own_patient(session, account_id, patient_id)
            await _refuse_if_booked(session, patient_id)
            row.removed_at = now

    async def change_identity(
        self,
        *,
        account_id: str,
        patient_id: str,
        name: str,
        document_type: str,
        document_number: str,
    ) -> PatientView:
        """修改实名信息: a few times a year at most, never with live bookings (changing the
        person behind a booking is how a scalper would hand it to a buyer)."""
        now = self._p.clock.now()
        async with self._p.sessions() as session:
            current = await self._own_patient(session, account_id, patient_id)
            relation = current.relation
        document, clean_name = await self._identify(name, document_type, document_number, relation)
        verification = await self._verifier.verify(
            document, validate_person_name(clean_name, document.type), checked_at=now
        )
        rules = (await self._rules.region()).identity
        document_hash = self._p.vault.index("document", person_key(document))
        try:
            async with self._p.sessions() as session, session.begin():
                await _lock_account(session, account_id)
                row = await self._own_patient(session, account_id, patient_id)
                await _refuse_if_booked(session, patient_id)
                changes = await session.scalar(
                    select(func.count())
                    .select_from(PatientIdentityChangeRow)
                    .where(
                        PatientIdentityChangeRow.patient_id == patient_id,
                        PatientIdentityChangeRow.changed_at > now - timedelta(days=365),
                    )
                )
                if (changes or 0) >= rules.identity_changes_per_year:
                    refuse("IDENTITY_CHANGE_LIMIT", limit=rules.identity_changes_per_year)
                person = await self._person_for(session, document_hash, document, verification)
                proof, target = await self._proof_for(
                    session, account_id, person.id, relation, document, verification
                )
                if needs_phone_code(proof, relation) and row.phone_enc is not None:
                    # a new person behind the row: confirmed again, by a fresh code
                    target = _CodeToSend(self._p.vault.open("phone", row.phone_enc), account_id)
                if relation == "self" and proof in PROVEN:
                    await self._take_back(session, account_id, person.id, now)
                row.proof = proof.value
                session.add(
                    PatientIdentityChangeRow(
                        id=new_id(),
                        patient_id=patient_id,
                        account_id=account_id,
                        old_person_id=row.person_id,
                        new_person_id=person.id,
                        changed_at=now,
                    )
                )
                row.person_id = person.id
                row.clear_name = ""
                row.name_enc = self._p.vault.seal(NAME_FIELD, clean_name)
                row.document_type = document.type.value
                row.document_hash = document_hash
                row.document_enc = self._p.vault.seal("document", document.number)
                row.document_masked = document.masked
                row.identity_changed_at = now
                await self._allow_code(row.id, target)  # refused: the change is not kept
                await session.flush()
        except IntegrityError:
            refuse("PERSON_IS_SELF_ELSEWHERE", field="document_number")
        return _view(self._p.vault, row, person, await self._send_code(row.id, target, True))

    async def _proof_for(
        self,
        session: AsyncSession,
        account_id: str,
        person_id: str,
        relation: str,
        document: IdentityDocument,
        verification: Verification,
    ) -> tuple[Proof, _CodeToSend | None]:
        """How this account's relation to the person stands as it is added (docs/identity.md).

        Once any other account has proven the person, knowing their number and name is no
        longer enough: the code goes to the person's phone on file. A guardian of a minor needs
        none while the minor has no proven 本人 elsewhere (a child has no phone of their own).
        """
        others = await _proven_elsewhere(session, account_id, person_id)
        proven_self = next((o for o in others if o.relation == "self"), None)
        born = document.birth_date
        minor = document.type.booked_by_guardian or (
            born is not None and age_on(born, self._today()) < ADULT_AGE
        )
        if relation == "child" and minor and proven_self is None:
            return Proof.GUARDIAN, None
        if not others:
            if verification.level.reaches(VerificationLevel.NAME_MATCHED_GOVERNMENT):
                return Proof.NAME_MATCHED, None
            return Proof.DECLARED, None
        if relation == "self" and proven_self is not None:
            refuse("PERSON_IS_SELF_ELSEWHERE", field="document_number")
        target = await self._phone_on_file(session, others)
        if target is None or self._codes is None:
            refuse("PATIENT_PROOF_UNREACHABLE", field="document_number")
        return Proof.PENDING_CODE, target

    async def _phone_to_confirm(
        self, session: AsyncSession, account_id: str, phone: str
    ) -> _CodeToSend | None:
        """Where the code confirming a declared relation to another adult goes: the phone
        given for the person, never the account's own (a code to it would confirm nothing the
        account had not proven already). Without a phone the patient is added but cannot be
        booked for (the page says to add them again with their phone)."""
        if not phone:
            return None
        account = await session.get(AccountRow, account_id)
        if account is not None and account.phone_hash == self._p.vault.index("phone", phone):
            refuse("PATIENT_PHONE_NOT_OWN", field="phone")
        return _CodeToSend(phone, account_id) if self._codes is not None else None

    async def _phone_on_file(
        self, session: AsyncSession, proven: list[PatientRow]
    ) -> _CodeToSend | None:
        """The person's phone: their own account's if they are someone's proven 本人, else the
        phone a proving account recorded for them."""
        for row in proven:
            if row.relation == "self":
                account = await session.get(AccountRow, row.account_id)
                if account is not None:
                    phone = self._p.vault.open("phone", account.phone_enc)
                    return _CodeToSend(phone, row.account_id)
        for row in proven:
            if row.phone_enc is not None:
                return _CodeToSend(self._p.vault.open("phone", row.phone_enc), row.account_id)
        return None

    async def _allow_code(self, patient_id: str, target: _CodeToSend | None) -> None:
        """Count the code about to be sent, inside the caller's transaction (see
        ``RelationCodes.allow``)."""
        if target is not None and self._codes is not None:
            await self._codes.allow(patient_id=patient_id, phone=target.phone)

    async def _send_code(
        self, patient_id: str, target: _CodeToSend | None, allowed: bool = False
    ) -> str:
        """Send the code of a pending relation (after its row is committed); the phone masked."""
        if target is None or self._codes is None:
            return ""
        await self._codes.send(
            patient_id=patient_id,
            phone=target.phone,
            holder_account_id=target.holder_account_id,
            allowed=allowed,
        )
        return mask_phone(target.phone)

    async def _take_back(
        self, session: AsyncSession, account_id: str, person_id: str, now: datetime
    ) -> None:
        """The real person, proven, claims 本人: every other account that holds them without
        proof loses them and is told in its inbox (not who claimed). Live bookings stay."""
        rows = (
            await session.scalars(
                select(PatientRow).where(
                    PatientRow.person_id == person_id,
                    PatientRow.account_id != account_id,
                    PatientRow.removed_at.is_(None),
                    PatientRow.proof.in_(UNPROVEN),
                )
            )
        ).all()
        for row in rows:
            row.removed_at = now
            # masked as the document is: the inbox is stored, and names are sealed at rest
            values = {
                "name": mask_name(patient_name(self._p.vault, row)),
                "document": row.document_masked,
            }
            session.add(
                NotificationRow(
                    id=new_id(),
                    account_id=row.account_id,
                    template=RECLAIMED_TEMPLATE,
                    params=values
                    | {
                        "zh": RECLAIMED_TEXT[0].format(**values),
                        "en": RECLAIMED_TEXT[1].format(**values),
                    },
                    dedupe_key=f"identity-reclaimed:{row.id}:{now.timestamp():.0f}",
                    created_at=now,
                )
            )
        await session.flush()  # the old 本人 row leaves the unique index before the new one

    async def confirm_patient(self, *, account_id: str, patient_id: str, code: str) -> PatientView:
        """Enter the code sent to the person's phone on file: the relation now exists (and a
        claim of 本人 so proven takes the identity back from relations without proof)."""
        if self._codes is None:
            refuse("PATIENT_PROOF_UNREACHABLE", patient_id=patient_id)
        async with self._p.sessions() as session:
            row = await self._own_patient(session, account_id, patient_id)
            pending = row.proof == Proof.PENDING_CODE
            declared = needs_phone_code(row.proof, row.relation)
        if pending or declared:
            await self._codes.check(patient_id, code)
        try:
            async with self._p.sessions() as session, session.begin():
                await _lock_account(session, account_id)
                row = await self._own_patient(session, account_id, patient_id)
                if row.proof == Proof.PENDING_CODE:
                    if row.relation == "self":
                        # Others' unproven claims (a stranger's pending 本人 too) go first:
                        # this row takes the person's one place as 本人 as it is proven.
                        await self._take_back(
                            session, account_id, row.person_id, self._p.clock.now()
                        )
                    row.proof = Proof.CODE.value
                    await session.flush()
                elif declared and needs_phone_code(row.proof, row.relation):
                    row.proof = Proof.PHONE_CODE.value
                    await session.flush()
                person = await session.get(PersonRow, row.person_id)
                assert person is not None
        except IntegrityError:
            # Another claim of 本人 was proven first (its code entered a moment before).
            refuse("PERSON_IS_SELF_ELSEWHERE", patient_id=patient_id)
        return _view(self._p.vault, row, person)

    async def resend_patient_code(self, *, account_id: str, patient_id: str) -> PatientView:
        """Send a fresh code for a pending relation (the earlier one dies)."""
        async with self._p.sessions() as session:
            row = await self._own_patient(session, account_id, patient_id)
            person = await session.get(PersonRow, row.person_id)
            assert person is not None
            if needs_phone_code(row.proof, row.relation):
                target = (
                    _CodeToSend(self._p.vault.open("phone", row.phone_enc), account_id)
                    if row.phone_enc is not None
                    else None  # added before the rule without a phone: added again with one
                )
            elif row.proof != Proof.PENDING_CODE:
                return _view(self._p.vault, row, person)
            else:
                others = await _proven_elsewhere(session, account_id, row.person_id)
                target = await self._phone_on_file(session, others)
        if target is None or self._codes is None:
            refuse("PATIENT_PROOF_UNREACHABLE", patient_id=patient_id)
        return _view(self._p.vault, row, person, await self._send_code(row.id, target))

    @staticmethod
    async def _own_patient(session: AsyncSession, account_id: str, patient_id: str) -> PatientRow:
        row = await session.get(PatientRow, patient_id)
        if row is None or row.removed_at is not None:
            refuse("PATIENT_NOT_FOUND", patient_id=patient_id)
        if row.account_id != account_id:
            refuse("PATIENT_NOT_OWNED", patient_id=patient_id)
        return row

    async def patients(self, account_id: str) -> list[PatientView]:
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(PatientRow, PersonRow)
                    .join(PersonRow, PersonRow.id == PatientRow.person_id)
                    .where(PatientRow.account_id == account_id, PatientRow.removed_at.is_(None))
                    .order_by(PatientRow.created_at)
                )
            ).all()
            views = []
            for patient, person in rows:
                sent_to = ""
                if patient.proof == Proof.PENDING_CODE:
                    others = await _proven_elsewhere(session, account_id, patient.person_id)
                    target = await self._phone_on_file(session, others)
                    sent_to = mask_phone(target.phone) if target is not None else ""
                elif needs_phone_code(patient.proof, patient.relation):
                    sent_to = patient.phone_masked
                views.append(_view(self._p.vault, patient, person, sent_to))
        return views

    async def notifications(self, account_id: str) -> list[NotificationView]:
        """The account's inbox, newest first (the ``INBOX_PAGE`` newest messages)."""
        async with self._p.sessions() as session:
            rows = (
                await session.scalars(
                    select(NotificationRow)
                    .where(NotificationRow.account_id == account_id)
                    .order_by(NotificationRow.created_at.desc())
                    .limit(INBOX_PAGE)
                )
            ).all()
        return [
            NotificationView(id=r.id, topic=r.template, params=r.params, created_at=r.created_at)
            for r in rows
        ]


async def _lock_account(session: AsyncSession, account_id: str) -> None:
    """Take the account's turn (first statement): a no-op write locks the row on PostgreSQL
    and takes SQLite's write lock, so two requests cannot both add the last allowed patient."""
    result = await session.execute(
        update(AccountRow)
        .where(AccountRow.id == account_id)
        .values(display_name=AccountRow.display_name)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        refuse("ACCOUNT_NOT_FOUND", account_id=account_id)


async def _refuse_if_booked(session: AsyncSession, patient_id: str) -> None:
    live = await session.scalar(
        select(BookingRow.id)
        .where(BookingRow.patient_id == patient_id, BookingRow.status.in_(LIVE_WITH_PATIENT))
        .limit(1)
    )
    if live is not None:
        refuse("PATIENT_HAS_ACTIVE_BOOKINGS", patient_id=patient_id)


async def _proven_elsewhere(
    session: AsyncSession, account_id: str, person_id: str
) -> list[PatientRow]:
    """The person's live relations on other accounts that were proven, oldest first."""
    return list(
        (
            await session.scalars(
                select(PatientRow)
                .where(
                    PatientRow.person_id == person_id,
                    PatientRow.account_id != account_id,
                    PatientRow.removed_at.is_(None),
                    PatientRow.proof.in_(PROVEN),
                )
                .order_by(PatientRow.created_at)
            )
        ).all()
    )


def _view(
    vault: PersonalDataVault, row: PatientRow, person: PersonRow, code_sent_to: str = ""
) -> PatientView:
    return PatientView(
        id=row.id,
        name=patient_name(vault, row),
        relation=row.relation,
        document_type=row.document_type,
        document_masked=row.document_masked,
        phone_masked=row.phone_masked,
        sex=person.sex,
        verification_level=person.verification_level,
        booked_by_guardian=DocumentType(row.document_type).booked_by_guardian,
        proof=row.proof,
        code_sent_to=code_sent_to,
        bookable=row.proof != Proof.PENDING_CODE and not needs_phone_code(row.proof, row.relation),
    )
