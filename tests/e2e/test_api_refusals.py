"""Refusals over HTTP: the right status, a stable code, both messages, and no effect.

Each test reads what a citizen can see (the booking, the doctor's availability, the account's
lists) before the refused request and again after it, and expects them unchanged. None of
these may ever answer 500.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from guahao.bootstrap import Platform
from guahao.platform.clock import ManualClock
from guahao.platform.hospitals import PaymentMode
from guahao.platform.inventory import redis_inventory
from guahao.platform.payments.signatures import SIGNATURE_HEADER
from guahao.platform.schedules import HospitalSpec
from guahao.web.auth import TokenIssuer
from tests.e2e.support import (
    VALID_ID,
    Citizen,
    assert_refused,
    availability,
    find_doctor,
)
from tests.fixtures.platforms import SESSION_DAY, at_local, clinic, publish_clinic

RELEASE_DAY = SESSION_DAY - timedelta(days=7)  # the clinic releases 7 days ahead at 08:00
CANCEL_DEADLINE = at_local(SESSION_DAY - timedelta(days=1), 15)  # day before, 15:00


@dataclass
class OnSale:
    """The test clinic published, its session released, seen through the API."""

    platform: Platform
    http: httpx.AsyncClient
    clock: ManualClock
    doctor_id: str
    slot_ids: list[str]

    async def seen(self) -> dict[str, int]:
        return await availability(self.http, self.doctor_id, SESSION_DAY)


async def _on_sale(
    platform: Platform, http: httpx.AsyncClient, spec: HospitalSpec | None = None
) -> OnSale:
    slot_ids = await publish_clinic(platform, spec)
    clock = platform.ports.clock
    assert isinstance(clock, ManualClock)
    clock.set(at_local(RELEASE_DAY, 9))
    doctor_id = await find_doctor(http, "h1", "心内科")
    return OnSale(platform, http, clock, doctor_id, slot_ids)


@pytest.fixture
async def on_sale(platform: Platform, http: httpx.AsyncClient) -> OnSale:
    return await _on_sale(platform, http)


async def _held_with_patient(citizen: Citizen, slot_id: str) -> dict[str, Any]:
    held = await citizen.hold(slot_id)
    assert held.status_code == 201, held.text
    patient = await citizen.add_patient()
    chosen = await citizen.put(
        f"/api/v1/bookings/{held.json()['id']}/patient", json={"patientId": patient["id"]}
    )
    assert chosen.status_code == 200, chosen.text
    booking: dict[str, Any] = chosen.json()
    return booking


# --------------------------------------------------------------------------- inventory


async def test_unknown_slot_is_404(on_sale: OnSale, citizen: Citizen) -> None:
    before = await on_sale.seen()
    body = assert_refused(await citizen.hold("no-such-slot"), 404, "SLOT_NOT_FOUND")
    assert body["detail"]["slot_id"] == "no-such-slot"
    assert await citizen.bookings() == []
    assert await on_sale.seen() == before


async def test_a_slot_not_yet_released_is_refused_until_release(
    on_sale: OnSale, citizen: Citizen
) -> None:
    on_sale.clock.set(at_local(RELEASE_DAY, 7, 59))
    sessions = (
        await on_sale.http.get(
            f"/api/v1/doctors/{on_sale.doctor_id}/availability",
            params={"from": SESSION_DAY.isoformat(), "to": SESSION_DAY.isoformat()},
        )
    ).json()
    assert sessions[0]["released"] is False
    before = await on_sale.seen()

    assert_refused(await citizen.hold(on_sale.slot_ids[0]), 409, "SLOT_NOT_RELEASED")
    assert await citizen.bookings() == []
    assert await on_sale.seen() == before

    on_sale.clock.set(at_local(RELEASE_DAY, 8))
    assert (await citizen.hold(on_sale.slot_ids[0])).status_code == 201


async def test_a_sold_out_slot_is_refused(
    platform: Platform,
    http: httpx.AsyncClient,
    sign_up: Callable[[], Awaitable[Citizen]],
) -> None:
    shop = await _on_sale(platform, http, clinic(units=1))
    first, second = await sign_up(), await sign_up()
    slot_id = shop.slot_ids[0]
    held = await first.hold(slot_id)
    assert held.status_code == 201, held.text
    before, booking = await shop.seen(), await first.booking(held.json()["id"])
    assert before[slot_id] == 0

    assert_refused(await second.hold(slot_id), 409, "SLOT_SOLD_OUT")
    assert await second.bookings() == []
    assert await first.booking(booking["id"]) == booking
    assert await shop.seen() == before


async def test_a_hold_on_a_slot_whose_rebuild_stalled_is_503_with_retry_after_and_no_effect(
    on_sale: OnSale, citizen: Citizen, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebuild that raised its fence and then stalled (its SQL read hangs): steps on the
    # slot wait for it, then answer "retry" instead of acting on a pool about to be replaced.
    monkeypatch.setattr(redis_inventory, "FENCE_WAIT_MS", 200)
    slot_id = on_sale.slot_ids[0]
    before = await on_sale.seen()
    assert await on_sale.platform.ports.inventory.fence(slot_id, token="stalled", ttl_ms=10_000)

    body = assert_refused(await citizen.hold(slot_id), 503, "INVENTORY_UNAVAILABLE")

    assert body["detail"]["reason"] == "rebuilding"
    assert (await citizen.hold(slot_id)).headers["Retry-After"] == "1"
    await on_sale.platform.ports.inventory.unfence(slot_id, token="stalled")
    assert await citizen.bookings() == []
    assert await on_sale.seen() == before
    held = await citizen.hold(slot_id)  # the rebuild over, the same citizen holds at once
    assert held.status_code == 201, held.text


async def test_an_expired_hold_is_refused_and_its_unit_is_back(
    on_sale: OnSale, citizen: Citizen
) -> None:
    full = await on_sale.seen()
    held = await citizen.hold(on_sale.slot_ids[0])
    assert held.status_code == 201, held.text
    booking_id = held.json()["id"]
    patient = await citizen.add_patient()
    on_sale.clock.advance(minutes=10, seconds=1)  # hold_minutes=10
    assert await on_sale.seen() == full  # the lapsed hold no longer counts

    choose = await citizen.put(
        f"/api/v1/bookings/{booking_id}/patient", json={"patientId": patient["id"]}
    )
    assert_refused(choose, 409, "HOLD_EXPIRED")
    expired = await citizen.booking(booking_id)
    assert expired["status"] == "expired"
    assert expired["patientId"] is None
    assert await on_sale.seen() == full

    submit = await citizen.post(f"/api/v1/bookings/{booking_id}/submit", json={})
    assert_refused(submit, 409, "HOLD_EXPIRED")
    assert await citizen.booking(booking_id) == expired
    assert await on_sale.seen() == full


# --------------------------------------------------------------------------- ownership and state


async def test_someone_elses_booking_is_403_for_every_step(
    on_sale: OnSale, sign_up: Callable[[], Awaitable[Citizen]]
) -> None:
    owner, other = await sign_up(), await sign_up()
    booking = await _held_with_patient(owner, on_sale.slot_ids[0])
    theirs = await other.add_patient("李四")
    before = await on_sale.seen()
    path = f"/api/v1/bookings/{booking['id']}"

    attempts = {
        "choose": await other.put(f"{path}/patient", json={"patientId": theirs["id"]}),
        "submit": await other.post(f"{path}/submit", json={"channel": "self_pay"}),
        "leave": await other.post(f"{path}/leave"),
        "cancel": await other.post(f"{path}/cancel"),
    }
    for step, response in attempts.items():
        body = assert_refused(response, 403, "HOLD_NOT_OWNED")
        assert body["detail"]["booking_id"] == booking["id"], step
    # Reading it does not even reveal that it exists.
    assert_refused(await other.get(path), 404, "BOOKING_NOT_FOUND")

    assert await owner.booking(booking["id"]) == booking
    assert await other.bookings() == []
    assert await on_sale.seen() == before


async def test_submitting_a_confirmed_booking_again_is_409(
    on_sale: OnSale, citizen: Citizen
) -> None:
    patient = await citizen.add_patient()
    booking = await citizen.confirmed_booking(on_sale.slot_ids[0], patient["id"])
    before = await on_sale.seen()
    path = f"/api/v1/bookings/{booking['id']}"

    again = await citizen.post(f"{path}/submit", json={"channel": "self_pay"})
    body = assert_refused(again, 409, "BOOKING_ALREADY_CONFIRMED")
    assert body["detail"]["booking_id"] == booking["id"]
    # Paying the same order again at the cashier re-sends the same notice: refused as a replay.
    paid_again = await citizen.http.post(
        f"/sandbox/pay/{booking['paymentOrderNo']}", params={"channel": "self_pay"}
    )
    assert_refused(paid_again, 409, "PAYMENT_CALLBACK_REPLAYED")

    assert await citizen.booking(booking["id"]) == booking
    assert await on_sale.seen() == before


async def test_cancelling_after_the_deadline_is_refused(on_sale: OnSale, citizen: Citizen) -> None:
    patient = await citizen.add_patient()
    booking = await citizen.confirmed_booking(on_sale.slot_ids[0], patient["id"])
    on_sale.clock.set(CANCEL_DEADLINE)
    before = await on_sale.seen()

    body = assert_refused(
        await citizen.post(f"/api/v1/bookings/{booking['id']}/cancel"),
        409,
        "CANCEL_DEADLINE_PASSED",
    )
    assert body["detail"]["deadline"].startswith(CANCEL_DEADLINE.isoformat()[:16])
    assert await citizen.booking(booking["id"]) == booking
    assert await on_sale.seen() == before


# --------------------------------------------------------------------------- payment callbacks


async def test_forged_and_replayed_payment_notices_change_nothing(
    on_sale: OnSale, citizen: Citizen
) -> None:
    held = await _held_with_patient(citizen, on_sale.slot_ids[0])
    submitted = await citizen.post(
        f"/api/v1/bookings/{held['id']}/submit", json={"channel": "self_pay"}
    )
    assert submitted.status_code == 200, submitted.text
    awaiting = submitted.json()
    # The gateway's genuine notice for this order, exactly as it would POST it to us.
    headers, body = await on_sale.platform.gateway.pay(
        awaiting["paymentOrderNo"], channel="self_pay"
    )
    before = await on_sale.seen()
    notify = "/api/v1/payments/notify"
    json_headers = {"content-type": "application/json"}

    flipped = dict(headers)
    flipped[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER][:-1] + (
        "0" if headers[SIGNATURE_HEADER][-1] != "0" else "1"
    )
    richer = json.loads(body)
    richer["amount_cents"] = 1
    forgeries = [
        (flipped, body),  # wrong signature
        (headers, json.dumps(richer).encode()),  # body changed under a genuine signature
        ({}, body),  # unsigned
    ]
    for forged_headers, forged_body in forgeries:
        response = await on_sale.http.post(
            notify, content=forged_body, headers=json_headers | forged_headers
        )
        assert_refused(response, 403, "PAYMENT_SIGNATURE_INVALID")
        assert await citizen.booking(held["id"]) == awaiting
        assert await on_sale.seen() == before

    genuine = await on_sale.http.post(notify, content=body, headers=json_headers | headers)
    assert genuine.status_code == 200, genuine.text
    assert genuine.json()["result"] == "confirmed"
    confirmed = await citizen.booking(held["id"])
    assert confirmed["status"] == "confirmed"
    assert confirmed["paid"] is True

    replayed = await on_sale.http.post(notify, content=body, headers=json_headers | headers)
    assert_refused(replayed, 409, "PAYMENT_CALLBACK_REPLAYED")
    assert await citizen.booking(held["id"]) == confirmed
    assert await on_sale.seen() == before


# --------------------------------------------------------------------------- authentication


async def test_without_a_valid_token_nothing_is_served_or_held(
    platform: Platform, on_sale: OnSale, citizen: Citizen
) -> None:
    before = await on_sale.seen()
    foreign_key = base64.b64encode(b"x" * 32).decode()
    forged = TokenIssuer(foreign_key, 5).issue(citizen.account_id)
    credentials: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {citizen.token}"},
        {"Authorization": f"Bearer {forged}"},  # signed with another key
    ]
    for auth in credentials:
        http = on_sale.http
        for response in (
            await http.get("/api/v1/bookings", headers=auth),
            await http.get("/api/v1/me/patients", headers=auth),
            await http.get("/api/v1/me/notifications", headers=auth),
            await http.post(
                "/api/v1/holds",
                json={"slotId": on_sale.slot_ids[0]},
                headers=auth | {"Idempotency-Key": uuid.uuid4().hex},
            ),
            await http.post(
                "/api/v1/me/patients",
                json={"name": "张三", "documentType": "resident_id", "documentNumber": VALID_ID},
                headers=auth,
            ),
        ):
            assert_refused(response, 401, "UNAUTHENTICATED")
    assert await citizen.bookings() == []
    assert (await citizen.get("/api/v1/me/patients")).json() == []
    assert await on_sale.seen() == before


async def test_wrong_credentials_are_401(http: httpx.AsyncClient, citizen: Citizen) -> None:
    wrong = await http.post(
        "/api/v1/auth/token", json={"phone": citizen.phone, "password": "not-the-password"}
    )
    assert_refused(wrong, 401, "CREDENTIALS_INVALID")


# --------------------------------------------------------------------------- bad input

Send = Callable[[Citizen, str], Awaitable[httpx.Response]]


def _hold_raw(content: bytes) -> Send:
    async def send(citizen: Citizen, _slot_id: str) -> httpx.Response:
        headers = {"content-type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
        return await citizen.post("/api/v1/holds", content=content, headers=headers)

    return send


def _hold_json(body: Callable[[str], Any], *, key: bool = True) -> Send:
    async def send(citizen: Citizen, slot_id: str) -> httpx.Response:
        headers = {"Idempotency-Key": uuid.uuid4().hex} if key else {}
        return await citizen.post("/api/v1/holds", json=body(slot_id), headers=headers)

    return send


def _patient(**fields: Any) -> Send:
    async def send(citizen: Citizen, _slot_id: str) -> httpx.Response:
        body = {"name": "李四", "documentType": "resident_id", "documentNumber": VALID_ID}
        return await citizen.post("/api/v1/me/patients", json=body | fields)

    return send


def _register(content: bytes) -> Send:
    async def send(citizen: Citizen, _slot_id: str) -> httpx.Response:
        return await citizen.http.post(
            "/api/v1/accounts", content=content, headers={"content-type": "application/json"}
        )

    return send


BAD_INPUT: list[Any] = [
    pytest.param(_hold_raw(b'{"slotId": '), 422, "VALIDATION_FAILED", id="hold-malformed-json"),
    pytest.param(_hold_raw(b"\xff\xfe{}"), 422, "VALIDATION_FAILED", id="hold-not-utf8"),
    pytest.param(
        _hold_raw(b'{"slotId": "\xff\xfe"}'), 422, "VALIDATION_FAILED", id="hold-string-not-utf8"
    ),
    pytest.param(_hold_raw(b"[]"), 422, "VALIDATION_FAILED", id="hold-array"),
    pytest.param(_hold_raw(b""), 422, "VALIDATION_FAILED", id="hold-empty-body"),
    pytest.param(
        _hold_json(lambda slot: {"slotId": slot, "units": 2}),
        422,
        "VALIDATION_FAILED",
        id="hold-unknown-field",
    ),
    pytest.param(
        _hold_json(lambda slot: {"slotId": slot}, key=False),
        422,
        "VALIDATION_FAILED",
        id="hold-missing-idempotency-key",
    ),
    pytest.param(
        _hold_json(lambda slot: {"slotId": 42}), 422, "VALIDATION_FAILED", id="hold-wrong-type"
    ),
    pytest.param(
        _patient(documentNumber="110105194912310021"),
        422,
        "ID_NUMBER_CHECKSUM_MISMATCH",
        id="patient-id-check-character",
    ),
    pytest.param(
        _patient(documentNumber="11010519491231"), 422, "ID_NUMBER_INVALID", id="patient-id-short"
    ),
    pytest.param(_patient(phone="12345"), 422, "VALIDATION_FAILED", id="patient-bad-phone"),
    pytest.param(_patient(nickname="x"), 422, "VALIDATION_FAILED", id="patient-unknown-field"),
    pytest.param(
        _patient(documentType="library_card"), 422, "DOCUMENT_TYPE_UNKNOWN", id="patient-bad-type"
    ),
    pytest.param(
        _patient(documentNumber="110105194902300020"),
        422,
        "ID_BIRTH_DATE_INVALID",
        id="patient-id-impossible-birth-date",
    ),
    pytest.param(_patient(name="张3"), 422, "PATIENT_NAME_INVALID", id="patient-name-with-digit"),
    pytest.param(
        _patient(name="Zhang San"), 422, "PATIENT_NAME_SCRIPT_MISMATCH", id="patient-latin-on-id"
    ),
    pytest.param(
        _register(b'{"phone": "12345678", "password": "long-enough-1"}'),
        422,
        "VALIDATION_FAILED",
        id="account-bad-phone",
    ),
    pytest.param(
        _register(b'{"phone": "13900000001", "password": "long-enough-1", "admin": true}'),
        422,
        "VALIDATION_FAILED",
        id="account-unknown-field",
    ),
    pytest.param(_register(b"{phone=1}"), 422, "VALIDATION_FAILED", id="account-malformed-json"),
]


@pytest.mark.parametrize(("send", "status", "code"), BAD_INPUT)
async def test_bad_input_is_refused_without_effect(
    on_sale: OnSale, citizen: Citizen, send: Send, status: int, code: str
) -> None:
    patients = (await citizen.get("/api/v1/me/patients")).json()
    before = await on_sale.seen()

    assert_refused(await send(citizen, on_sale.slot_ids[0]), status, code)

    assert (await citizen.get("/api/v1/me/patients")).json() == patients
    assert await citizen.bookings() == []
    assert await on_sale.seen() == before
    for phone in ("12345678", "13900000001"):  # the refused registrations created nothing
        token = await on_sale.http.post(
            "/api/v1/auth/token", json={"phone": phone, "password": "long-enough-1"}
        )
        assert_refused(token, 401, "CREDENTIALS_INVALID")


async def test_bad_query_parameters_are_422(on_sale: OnSale) -> None:
    path = f"/api/v1/doctors/{on_sale.doctor_id}/availability"
    for params in (
        {"from": "not-a-date"},
        {"from": "2026-03-04", "to": "2026-03-01"},  # backwards
        {"from": "2026-03-01", "to": "2026-06-01"},  # more than 31 days
    ):
        assert_refused(await on_sale.http.get(path, params=params), 422, "VALIDATION_FAILED")
    cashier = await on_sale.http.post("/sandbox/pay/ANY", params={"channel": "cash"})
    assert_refused(cashier, 422, "VALIDATION_FAILED")


# --------------------------------------------------------------------------- addresses


async def test_unknown_routes_and_ids(http: httpx.AsyncClient, citizen: Citizen) -> None:
    for path in ("/api/v1/nothing-here", "/nope", "/api/v2/hospitals"):
        assert_refused(await http.get(path), 404, "ROUTE_NOT_FOUND")
    assert_refused(await citizen.post("/api/v1/bookings"), 405, "REQUEST_REFUSED")
    assert_refused(await http.get("/api/v1/hospitals/none/departments"), 404, "HOSPITAL_NOT_FOUND")
    assert_refused(await http.get("/api/v1/departments/none/doctors"), 404, "DEPARTMENT_NOT_FOUND")
    assert_refused(await http.get("/api/v1/doctors/none/availability"), 404, "DOCTOR_NOT_FOUND")
    assert_refused(await citizen.get("/api/v1/bookings/none"), 404, "BOOKING_NOT_FOUND")
    assert_refused(await http.get("/sandbox/pay/NO-SUCH-ORDER"), 404, "PAYMENT_ORDER_NOT_FOUND")


async def test_insurance_at_a_hospital_without_it_is_refused(
    platform: Platform, http: httpx.AsyncClient, citizen: Citizen
) -> None:
    shop = await _on_sale(platform, http, clinic(PaymentMode.ONLINE_NO_INSURANCE))
    held = await _held_with_patient(citizen, shop.slot_ids[0])
    before = await shop.seen()
    submit = await citizen.post(
        f"/api/v1/bookings/{held['id']}/submit", json={"channel": "insurance"}
    )
    assert_refused(submit, 422, "PAYMENT_MODE_UNSUPPORTED")
    assert await citizen.booking(held["id"]) == held
    assert await shop.seen() == before
