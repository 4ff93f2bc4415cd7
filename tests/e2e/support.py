"""Helpers for the HTTP end-to-end tests: an account driving the API as an app would, and
small readers of the public views (availability, one booking) to compare before and after."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import date
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import httpx

from guahao.platform.error_codes import CODES
from tests.fixtures.platforms import SentTexts, resident_id

__all__ = [
    "PASSWORD",
    "VALID_ID",
    "Citizen",
    "ConsoleTexts",
    "assert_refused",
    "availability",
    "find_doctor",
    "free_port",
    "pay_path",
    "register",
]

VALID_ID = "11010519491231002X"
"""A resident identity number with a correct check character (GB 11643-1999)."""

PASSWORD = "correct-horse-9"

_serials = count(1)


_SERIALS = count(int.from_bytes(os.urandom(3), "big") + 1)
"""Resident id serials: random per process, so servers shared across test runs differ."""


ConsoleTexts = SentTexts
"""The codes a served platform texts, read as a demo's user reads them (one reader with the
fixtures')."""


async def register(
    http: httpx.AsyncClient,
    phone: str,
    password: str = PASSWORD,
    display_name: str = "",
    base: str = "",
) -> str:
    """POST /accounts, then POST /accounts/confirm with the code the console printed: the new
    account's id."""
    with ConsoleTexts.attached() as texts:
        sent = await http.post(
            f"{base}/api/v1/accounts",
            json={"phone": phone, "password": password, "displayName": display_name},
        )
        assert sent.status_code == 202, sent.text
        assert sent.json() == {"status": "code_sent", "sentTo": f"{phone[:3]}****{phone[-4:]}"}
        code = texts.code_to(phone)
    created = await http.post(
        f"{base}/api/v1/accounts/confirm", json={"phone": phone, "code": code}
    )
    assert created.status_code == 201, created.text
    account_id: str = created.json()["accountId"]
    return account_id


@dataclass
class Citizen:
    """A registered, signed-in account."""

    http: httpx.AsyncClient
    phone: str
    account_id: str
    token: str

    @classmethod
    async def sign_up(cls, http: httpx.AsyncClient) -> Citizen:
        """Register (POST /accounts and its code) then POST /auth/token, checking the answers."""
        phone = f"138{next(_serials):08d}"
        account_id = await register(http, phone, display_name="测试")
        token = await http.post("/api/v1/auth/token", json={"phone": phone, "password": PASSWORD})
        assert token.status_code == 200, token.text
        body = token.json()
        assert body["tokenType"] == "Bearer"
        assert body["expiresIn"] > 0
        assert body["accountId"] == account_id
        return cls(http, phone, body["accountId"], body["accessToken"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.auth, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.auth | kwargs.pop("headers", {})
        return await self.http.post(path, headers=headers, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.put(path, headers=self.auth, **kwargs)

    async def add_patient(self, name: str = "张三", number: str | None = None) -> dict[str, Any]:
        """Add a patient; by default a person nobody else has (a document can be the account
        holder of one account only, and the e2e server is shared by a module's tests)."""
        response = await self.post(
            "/api/v1/me/patients",
            json={
                "name": name,
                "documentType": "resident_id",
                "documentNumber": number or resident_id(next(_SERIALS)),
            },
        )
        assert response.status_code == 201, response.text
        patient: dict[str, Any] = response.json()
        return patient

    async def hold(self, slot_id: str, key: str | None = None) -> httpx.Response:
        return await self.post(
            "/api/v1/holds",
            json={"slotId": slot_id},
            headers={"Idempotency-Key": key or uuid.uuid4().hex},
        )

    async def booking(self, booking_id: str) -> dict[str, Any]:
        """GET /bookings/{id}, which must succeed."""
        response = await self.get(f"/api/v1/bookings/{booking_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def bookings(self) -> list[dict[str, Any]]:
        response = await self.get("/api/v1/bookings")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()
        return found

    async def confirmed_booking(self, slot_id: str, patient_id: str) -> dict[str, Any]:
        """Hold, choose the patient, submit self-pay and pay at the cashier: a confirmed
        booking, reached only through HTTP."""
        held = await self.hold(slot_id)
        assert held.status_code == 201, held.text
        booking_id = held.json()["id"]
        chosen = await self.put(
            f"/api/v1/bookings/{booking_id}/patient", json={"patientId": patient_id}
        )
        assert chosen.status_code == 200, chosen.text
        submitted = await self.post(
            f"/api/v1/bookings/{booking_id}/submit", json={"channel": "self_pay"}
        )
        assert submitted.status_code == 200, submitted.text
        paid = await self.http.post(
            pay_path(submitted.json()["payUrl"]), params={"channel": "self_pay"}
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["result"] == "confirmed"
        booking = await self.booking(booking_id)
        assert booking["status"] == "confirmed"
        return booking


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a child process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pay_path(pay_url: str) -> str:
    """The cashier path of a ``payUrl``.

    The test platform's public URL is ``http://testserver``; the cashier is served by the same
    app under ``/sandbox/pay/…``, so the test follows the path on the live server.

    >>> pay_path("http://testserver/sandbox/pay/GH123")
    '/sandbox/pay/GH123'
    """
    path = urlsplit(pay_url).path
    assert path.startswith("/sandbox/pay/"), pay_url
    return path


async def find_doctor(http: httpx.AsyncClient, hospital_code: str, department: str) -> str:
    """Browse hospital → department → first doctor; returns the doctor id."""
    hospitals = (await http.get("/api/v1/hospitals")).json()
    hospital = next(h for h in hospitals if h["code"] == hospital_code)
    departments = (await http.get(f"/api/v1/hospitals/{hospital['id']}/departments")).json()
    dep = next(d for d in departments if d["name"] == department)
    doctors = (await http.get(f"/api/v1/departments/{dep['id']}/doctors")).json()
    doctor_id: str = doctors[0]["id"]
    return doctor_id


async def availability(http: httpx.AsyncClient, doctor_id: str, day: date) -> dict[str, int]:
    """Units left per slot on ``day``, as a citizen sees them."""
    response = await http.get(
        f"/api/v1/doctors/{doctor_id}/availability",
        params={"from": day.isoformat(), "to": day.isoformat()},
    )
    assert response.status_code == 200, response.text
    return {slot["id"]: slot["available"] for s in response.json() for slot in s["slots"]}


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error shape every refusal shares: ``{code, message: {zh, en}, detail}``.

    For catalogued codes the messages are the catalogue's, in both languages.
    """
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "detail"}, body
    assert body["code"] == code, body
    assert set(body["message"]) == {"zh", "en"}, body
    assert body["message"]["zh"], body
    assert body["message"]["en"], body
    if code in CODES:
        _, zh, en = CODES[code]
        assert body["message"] == {"zh": zh, "en": en}, body
    assert isinstance(body["detail"], dict), body
    return body
