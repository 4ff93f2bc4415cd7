"""The authorization matrix, generated from the live OpenAPI document: every operation is called
as every role, on resources its own and someone else's, and the answer must be what the
document's ``security`` says (an allowed role passes the guard, anyone else is refused with 401 or
403) and what ownership says (another account or another hospital gets 403 or 404, never the
resource).

``OWNERSHIP`` classifies every operation; an operation the document lists and the table does not
(a new route) fails the test, so none can be added without deciding who may call it.

The world holds real resources of every kind a path names, the owner's and another account's or
hospital's: a wait, a lottery entry, a ban with its appeal, a strike, a suspicion signal, a filing
and the person record, so that an ownership check is exercised on an id that exists (a
placeholder id answers 404 to everyone and proves nothing). They are made once per world,
through the services, not the HTTP API, to keep the matrix's cost where it was.

Cost: the full matrix (about 80 operations x 9 roles, with the foreign variants) runs on SQLite;
on PostgreSQL the same checks run over a sample of one operation per tag, since authorization is
decided in the guards and the services' ownership checks, not by the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import httpx
import pytest
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.clock import ManualClock
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import (
    PatientRow,
    SessionRow,
    StrikeRow,
    SuspicionSignalRow,
)
from guahao.platform.services.accounts import PatientView
from tests.e2e.support import Citizen
from tests.fixtures.platforms import (
    SESSION_DAY,
    add_confirmed,
    at_local,
    clinic,
    publish_clinic,
    resident_id,
)

pytestmark = pytest.mark.slow

Owner = Literal["none", "account", "hospital", "self-authenticating"]

# What each operation's path resource belongs to: "account" (a citizen's: another account
# must be refused), "hospital" (a hospital's: another hospital's staff must be refused),
# "none" (no resource of anyone's, or open to every role the security allows),
# "self-authenticating" (open to everyone but checking what it is sent: the token endpoints'
# credentials, the payment gateway's signature; refusing those with 401/403 is their job).
OWNERSHIP: dict[str, Owner] = {
    # public catalogue, search and health
    "health": "none",
    "listHospitals": "none",
    "listDepartments": "none",
    "listDoctors": "none",
    "doctorAvailability": "none",
    "doctorAlternatives": "none",
    "search": "none",
    "registerAccount": "none",
    "confirmRegistration": "self-authenticating",
    "paymentNotify": "self-authenticating",
    "oidcSignIn": "none",
    "oidcCallback": "none",
    "oidcLogout": "none",
    "issueToken": "self-authenticating",
    "issueStaffToken": "self-authenticating",
    "hospitalToken": "self-authenticating",
    # a citizen's own things
    "listPatients": "none",
    "addPatient": "none",
    "removePatient": "account",
    "provePatientRelation": "account",
    "resendPatientRelationCode": "account",
    "changePatientIdentity": "account",
    "listFilings": "account",
    "requestFiling": "account",
    "listNotifications": "none",
    "patientStanding": "account",
    "holdSlot": "none",
    "listBookings": "none",
    "getBooking": "account",
    "choosePatient": "account",
    "submitBooking": "account",
    "cancelBooking": "account",
    "leaveBooking": "account",
    "fileAppeal": "none",
    "listMyAppeals": "none",
    "listWaits": "none",
    "joinWaitlist": "none",
    "leaveWaitlist": "account",
    "listLotteryEntries": "none",
    "enterLottery": "none",
    "withdrawLotteryEntry": "account",
    "listRebookingOffers": "none",
    "acceptRebookingOffer": "account",
    "declineRebookingOffer": "account",
    # a visit reminder's one-tap 退号 link: the signed, single-use token is the credential
    "cancelByReminderLink": "self-authenticating",
    # the authority (region-wide, by role)
    "listBans": "none",
    "addBan": "none",
    "liftBan": "none",
    "listAppeals": "none",
    "decideAppeal": "none",
    "auditLog": "none",
    "connectorHealth": "none",
    "findPerson": "none",
    "personRecord": "none",
    "removeStrike": "none",
    "listSignals": "none",
    "reviewSignal": "none",
    "accessFigures": "none",
    "complianceFigures": "none",
    "hospitalRankings": "none",
    "supplyDemandFigures": "none",
    "unmetDemandFigures": "none",
    "exportFigures": "none",
    "paymentReconciliationReport": "none",
    "regionRules": "none",
    "changeRegionRules": "none",
    "hospitalRules": "none",
    "changeHospitalRules": "hospital",
    "rulesHistory": "none",
    "addOnSummary": "none",
    # a hospital's desk (its staff) and its system (OAuth2 client)
    "addOnUnit": "hospital",
    "recordFilingResult": "hospital",
    "grantFollowUp": "hospital",
    "recordFollowUpVisit": "hospital",
    "pushSchedules": "none",
    "pushScheduleFile": "none",
    "scheduleTemplate": "none",
    "pushCapacity": "none",
    "pushCancellation": "none",
    "pushCheckIn": "none",
    "pushFiling": "none",
    "pushSessionStop": "none",
    "hospitalBookings": "none",
}

# The operations open to anyone: the matrix's expectations come from the document, whose
# requirements come from the guards, so a guard dropped by mistake would make an operation
# public in both; this list is the independent record that catches it.
PUBLIC = {
    "health",
    "listHospitals",
    "listDepartments",
    "listDoctors",
    "doctorAvailability",
    "doctorAlternatives",
    "search",
    "registerAccount",
    "confirmRegistration",
    "issueToken",
    "issueStaffToken",
    "hospitalToken",
    "paymentNotify",
    "oidcSignIn",
    "oidcCallback",
    "cancelByReminderLink",
}

# The operations on resources the world made for real, and the role that owns or may act on
# them: its call must succeed (200), or the ids were not real and the foreign and refused calls
# on them proved nothing.
REACHED = {
    "leaveWaitlist": "citizen",
    "recordFilingResult": "hospital_staff",
    "liftBan": "admin",
    "decideAppeal": "admin",
    "removeStrike": "admin",
    "reviewSignal": "admin",
    "personRecord": "admin",
}

METHODS = ("get", "put", "post", "delete", "patch")
STAFF_ROLES = {
    "admin": "authority_admin",
    "auditor": "authority_auditor",
    "hospital_staff": "hospital_staff",
    "other_hospital_staff": "hospital_staff",
}
CITIZENS = {"citizen", "other_citizen"}
HOSPITAL_CLIENTS = {"hospital_client", "other_hospital_client"}
ROLES = ("anonymous", *sorted(CITIZENS), *sorted(HOSPITAL_CLIENTS), *sorted(STAFF_ROLES))


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    security: list[dict[str, list[str]]]
    tag: str


def operations_of(document: Mapping[str, Any]) -> list[Operation]:
    return [
        Operation(
            op["operationId"],
            method,
            path,
            op.get("security", []),
            (op.get("tags") or ["untagged"])[0],
        )
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def allowed(operation: Operation, role: str) -> bool:
    """What the document promises: does some requirement of the operation fit ``role``?"""
    if not operation.security:
        return True
    for requirement in operation.security:
        if not requirement:
            return True  # an optional requirement ({}): anyone
        for scheme, names in requirement.items():
            if scheme == "citizenBearer" and role in CITIZENS:
                return True
            if scheme == "hospitalOAuth2" and role in HOSPITAL_CLIENTS:
                return True  # both clients hold every scope
            if (
                scheme == "staffBearer"
                and role in STAFF_ROLES
                and (not names or STAFF_ROLES[role] in names)
            ):
                return True
    return False


def foreign(operation: Operation, role: str) -> bool:
    """Is ``role`` calling with someone else's resource (the owner's ids are in the path)?"""
    owner = OWNERSHIP[operation.operation_id]
    return (owner == "account" and role == "other_citizen") or (
        owner == "hospital" and role == "other_hospital_staff"
    )


class World:
    """The roles' credentials and the owner's resources, made through the real platform and
    the real token endpoints."""

    def __init__(self) -> None:
        self.headers: dict[str, dict[str, str]] = {"anonymous": {}}
        self.ids: dict[str, str] = {}
        self.answers: dict[tuple[str, str], int] = {}
        """The status each (operation, role) was answered with."""
        self.ids_by_operation: dict[str, dict[str, str]] = {}
        """Where one path parameter names different kinds (``entry_id``: a wait, a lottery
        entry or a ban), the id each operation takes."""

    def path(self, template: str, operation_id: str = "") -> str:
        path = template
        ids = self.ids | self.ids_by_operation.get(operation_id, {})
        for name, value in ids.items():
            path = path.replace("{" + name + "}", value)
        return path.replace("{figure}", "supply-demand")

    def body(self, operation_id: str) -> dict[str, Any]:
        """Valid bodies for the operations on owned resources, so that a foreign call reaches
        the ownership check instead of stopping at validation."""
        return {
            "choosePatient": {"patientId": self.ids["patient_id"]},
            "submitBooking": {"channel": "self_pay"},
            "changePatientIdentity": {
                "name": "张三",
                "documentType": "resident_id",
                "documentNumber": resident_id(77),
            },
            "requestFiling": {"hospitalId": self.ids["hospital_id"]},
            "changeHospitalRules": {"overrides": {"followUpValidDays": 1}, "reason": "矩阵"},
            "addOnUnit": {"patientId": self.ids["patient_id"], "reason": "矩阵"},
            "recordFilingResult": {"status": "filed", "hisPatientId": "P1"},
            "acceptRebookingOffer": {"slotId": "0" * 32},
            "provePatientRelation": {"code": "000000"},
            "liftBan": {"reason": "矩阵"},
            "removeStrike": {"reason": "矩阵"},
            "decideAppeal": {"grant": False, "reason": "矩阵"},
            "reviewSignal": {"note": "矩阵"},
        }.get(operation_id, {})


async def staff_token(
    http: httpx.AsyncClient, platform: Platform, role: str, code: str | None
) -> str:
    username = f"m{uuid.uuid4().hex[:10]}"
    await platform.staff.create(
        username=username, password="staff-password-1", role=role, hospital_code=code
    )
    answer = await http.post(
        "/api/v1/staff/token", json={"username": username, "password": "staff-password-1"}
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["accessToken"]
    return token


async def hospital_token(http: httpx.AsyncClient, platform: Platform, code: str) -> str:
    issued = await platform.connectors.registry.issue_client(
        code, ["hospital:push", "hospital:read"]
    )
    answer = await http.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(issued.client_id, issued.client_secret),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


async def build_world(http: httpx.AsyncClient, platform: Platform) -> World:
    world = World()
    slots = await publish_clinic(platform)
    await platform.supply.register_hospital(clinic(code="h2"))
    clock = platform.ports.clock
    assert isinstance(clock, ManualClock)
    clock.set(at_local(SESSION_DAY - timedelta(days=7), 8, 5))  # the session is released

    owner, other = await Citizen.sign_up(http), await Citizen.sign_up(http)
    patient = await owner.add_patient("张三", resident_id(71))
    await other.add_patient("李四", resident_id(72))
    # confirmed, so that it belongs to the hospital (a held booking has no hospital yet)
    booking = await owner.confirmed_booking(slots[0], patient["id"])
    world.headers["citizen"] = owner.auth
    world.headers["other_citizen"] = other.auth
    for role, (staff_role, code) in {
        "admin": ("authority_admin", None),
        "auditor": ("authority_auditor", None),
        "hospital_staff": ("hospital_staff", "h1"),
        "other_hospital_staff": ("hospital_staff", "h2"),
    }.items():
        token = await staff_token(http, platform, staff_role, code)
        world.headers[role] = {"Authorization": f"Bearer {token}"}
    for role, code in {"hospital_client": "h1", "other_hospital_client": "h2"}.items():
        token = await hospital_token(http, platform, code)
        world.headers[role] = {"Authorization": f"Bearer {token}"}

    listing = (await http.get("/api/v1/hospitals")).json()
    hospital_id = booking.get("hospitalId") or _hospital_id(listing, "h1")
    owned = await owned_resources(platform, owner, other, patient["id"], hospital_id)
    world.ids.update(
        booking_id=booking["id"],
        patient_id=patient["id"],
        hospital_id=hospital_id,
        session_id=booking.get("sessionId", "0" * 32),
        department_id="0" * 32,
        doctor_id="0" * 32,
        offer_id="0" * 32,
        token="0" * 32,
        appeal_id=owned.appeal_id,
        strike_id=owned.strike_id,
        signal_id=owned.signal_id,
        person_id=owned.person_id,
        filing_id=owned.filing_id,
        entry_id=owned.wait_id,
    )
    # a lottery entry needs a lottery session: withdrawLotteryEntry keeps the wait's id, which
    # no lottery holds (404 to everyone, as a placeholder would)
    world.ids_by_operation = {"liftBan": {"entry_id": owned.ban_id}}
    return world


@dataclass(frozen=True)
class Owned:
    """The owner's resources of the kinds the paths name (real rows, real ids)."""

    wait_id: str
    ban_id: str
    appeal_id: str
    strike_id: str
    signal_id: str
    person_id: str
    filing_id: str


async def owned_resources(
    platform: Platform, owner: Citizen, other: Citizen, patient_id: str, hospital_id: str
) -> Owned:
    """A wait and a filing at hospital h1 for the owner's booked patient; a ban (with a strike
    and the owner's appeal) on a second patient of the owner, so that the owner's own calls on
    the booking are not refused by the ban; a suspicion signal on the owner's account. The
    other citizen has a wait of their own, so "foreign" is somebody's real resource."""
    doctor_id = await _doctor_of_hospital(platform, hospital_id)
    # a doctor's days (a session with units left cannot be waited for)
    days = {"date_from": SESSION_DAY, "date_to": SESSION_DAY + timedelta(days=1)}
    wait = await platform.waitlist.join(
        account_id=owner.account_id,
        patient_id=patient_id,
        scope="doctor",
        doctor_id=doctor_id,
        **days,
    )
    others_patient = await _relative(platform, other, "王五", resident_id(74))
    await platform.waitlist.join(
        account_id=other.account_id,
        patient_id=others_patient.id,
        scope="doctor",
        doctor_id=doctor_id,
        **days,
    )
    filing = await platform.filings.request(
        account_id=owner.account_id, patient_id=patient_id, hospital_id=hospital_id
    )
    banned = await _relative(platform, owner, "赵六", resident_id(73))
    person_id = await _person_of(platform, banned.id)
    admin = await platform.staff.create(
        username=f"w{uuid.uuid4().hex[:10]}", password="staff-password-1", role="authority_admin"
    )
    actor = await platform.staff.actor(admin.id)
    assert actor is not None
    ban = await platform.blacklist.add_ban(person_id, 30, "矩阵", actor)
    appeal = await platform.blacklist.file_appeal(owner.account_id, banned.id, ban.id, "矩阵")
    now = platform.ports.clock.now()
    strike = StrikeRow(
        id=new_id(), person_id=person_id, kind="no_show", occurred_at=now, recorded_at=now
    )
    signal = SuspicionSignalRow(
        id=new_id(),
        kind="cancel_rebook",
        subject_type="account",
        subject_id=owner.account_id,
        dedupe_key=f"cancel_rebook:{owner.account_id}",
        score=7,
        detail={"cancelled": 5, "rebooked": 5},
        detected_at=now,
    )
    async with platform.ports.sessions() as session, session.begin():
        session.add_all([strike, signal])
    return Owned(
        wait_id=wait.id,
        ban_id=ban.id,
        appeal_id=appeal.id,
        strike_id=strike.id,
        signal_id=signal.id,
        person_id=person_id,
        filing_id=filing.id,
    )


async def _relative(platform: Platform, citizen: Citizen, name: str, number: str) -> PatientView:
    return await add_confirmed(
        platform,
        citizen.account_id,
        name=name,
        document_type="resident_id",
        document_number=number,
        relation="other",
    )


async def _doctor_of_hospital(platform: Platform, hospital_id: str) -> str:
    async with platform.ports.sessions() as session:
        found = await session.scalar(
            select(SessionRow.doctor_id).where(SessionRow.hospital_id == hospital_id).limit(1)
        )
    assert found is not None
    return str(found)


async def _person_of(platform: Platform, patient_id: str) -> str:
    async with platform.ports.sessions() as session:
        row = await session.get(PatientRow, patient_id)
    assert row is not None
    return row.person_id


def _hospital_id(listing: Any, code: str) -> str:
    items = listing["items"] if isinstance(listing, dict) else listing
    return str(next(h["id"] for h in items if h.get("code") == code))


async def call(
    http: httpx.AsyncClient, world: World, operation: Operation, role: str
) -> httpx.Response:
    headers = {**world.headers[role], "Idempotency-Key": uuid.uuid4().hex}
    kwargs: dict[str, Any] = {"headers": headers}
    if operation.method in {"post", "put", "patch"}:
        kwargs["json"] = world.body(operation.operation_id)
    return await http.request(
        operation.method.upper(), world.path(operation.path, operation.operation_id), **kwargs
    )


def verdict(operation: Operation, role: str, response: httpx.Response) -> str | None:
    """None when the answer is what the document and ownership promise, else the complaint."""
    status = response.status_code
    if status >= 500:
        return f"server error {status}"
    if not allowed(operation, role):
        return None if status in (401, 403) else f"let in with {status}, expected 401/403"
    if foreign(operation, role):
        return None if status in (403, 404) else f"reached another's resource: {status}"
    if OWNERSHIP[operation.operation_id] == "self-authenticating":
        return None
    return f"refused with {status}" if status in (401, 403) else None


async def run_matrix(
    http: httpx.AsyncClient, platform: Platform, sample: bool
) -> tuple[int, list[str]]:
    document = (await http.get("/schema/openapi.json")).json()
    ops = operations_of(document)
    unclassified = sorted({op.operation_id for op in ops} - set(OWNERSHIP))
    assert not unclassified, f"classify these operations in OWNERSHIP: {unclassified}"
    assert {op.operation_id for op in ops if not op.security} == PUBLIC
    if sample:
        by_tag: dict[str, Operation] = {}
        for op in sorted(ops, key=lambda o: o.operation_id):
            if op.security:
                by_tag.setdefault(op.tag, op)
        ops = list(by_tag.values())
    world = await build_world(http, platform)
    # Foreign and refused calls first, while the owner's resources are intact; the owner's own
    # calls (which may cancel or remove them) last.
    owners_calls = [(op, r) for op in ops for r in ROLES if allowed(op, r) and not foreign(op, r)]
    others = [(op, r) for op in ops for r in ROLES if (op, r) not in owners_calls]
    complaints: list[str] = []
    for operation, role in others + owners_calls:
        response = await call(http, world, operation, role)
        world.answers[operation.operation_id, role] = response.status_code
        complaint = verdict(operation, role, response)
        if complaint:
            complaints.append(
                f"{operation.operation_id} ({operation.method.upper()} {operation.path}) as "
                f"{role}: {complaint}: {response.text[:160]}"
            )
    for (operation_id, role), status in world.answers.items():
        if REACHED.get(operation_id) == role and status != 200:
            complaints.append(f"{operation_id} as {role} did not reach its real resource: {status}")
    return len(others) + len(owners_calls), complaints


async def test_every_operation_answers_every_role_as_the_document_says(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    sample = platform.settings.database_url.startswith("postgresql")
    calls, complaints = await run_matrix(http, platform, sample=sample)
    assert calls >= (20 if sample else 600)
    assert not complaints, "\n".join(complaints)
