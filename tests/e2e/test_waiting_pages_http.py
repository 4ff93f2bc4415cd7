"""The waiting and inbox pages' forms over HTTP: each refuses a post without its CSRF token,
and each refusal comes back as a page with the platform's code and the API's status, never a
server error. On both databases."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from guahao.bootstrap import Platform
from guahao.platform.persistence.tables import SessionRow
from tests.e2e.test_citizen_session import csrf_of, signed_in
from tests.fixtures.platforms import patient_named, publish_clinic, resident_id, session_of

FORMS = (
    "/me/waits/join",
    "/me/waits/w1/leave",
    "/me/lottery/enter",
    "/me/lottery/e1/withdraw",
    "/me/notifications/n1/read",
    "/me/notifications/read-all",
)


async def test_every_waiting_and_inbox_form_needs_its_csrf_token(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await signed_in(http, caplog)
    for path in FORMS:
        refused = await http.post(path, data={"session_id": "s1", "patient_id": "p1"})
        assert (refused.status_code, "CSRF_TOKEN_INVALID" in refused.text) == (403, True), path


REFUSALS = [
    ("post", "/me/waits/no-such-wait/leave", {}, 404, "WAITLIST_ENTRY_NOT_FOUND"),
    ("post", "/me/lottery/no-such-entry/withdraw", {}, 404, "LOTTERY_ENTRY_NOT_FOUND"),
    ("post", "/me/notifications/no-such-message/read", {}, 404, "NOTIFICATION_NOT_FOUND"),
    ("get", "/me/waits/new", {}, 422, "WAITLIST_SCOPE_INVALID"),
    ("get", "/me/waits/new?session=no-such-session", {}, 404, "SESSION_NOT_FOUND"),
    ("post", "/me/waits/join", {"patient_id": "p1"}, 422, "WAITLIST_SCOPE_INVALID"),
    (
        "post",
        "/me/waits/join",
        {"doctor_id": "{doctor}", "date_from": "2026-13-01", "date_to": "x", "patient_id": ""},
        422,
        "WAITLIST_DATE_RANGE_INVALID",
    ),
    ("post", "/me/waits/join", {"session_id": "{session}"}, 404, "PATIENT_NOT_FOUND"),
    ("post", "/me/lottery/enter", {"session_id": "{session}"}, 404, "PATIENT_NOT_FOUND"),
    (
        "post",
        "/me/waits/join",
        {"session_id": "{session}", "patient_id": "{patient}"},
        409,
        "WAITLIST_UNITS_AVAILABLE",
    ),
    (
        "post",
        "/me/lottery/enter",
        {"session_id": "{session}", "patient_id": "{patient}"},
        409,
        "SESSION_NOT_LOTTERY",
    ),
]
"""(method, path, form, the API's status, the code): one case per way a page can refuse."""


async def test_a_refusal_on_a_waiting_page_is_a_page_with_its_code(
    platform: Platform, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    slots = await publish_clinic(platform)
    session_id = await session_of(platform, slots[0])
    async with platform.ports.sessions() as session:
        doctor_id = await session.scalar(
            select(SessionRow.doctor_id).where(SessionRow.id == session_id)
        )
    await signed_in(http, caplog)
    csrf = await csrf_of(http, "/me/")
    added = await http.post(
        "/me/patients",
        data={
            "csrf": csrf,
            "name": "王建国",
            "relation": "self",
            "document_type": "resident_id",
            "document_number": resident_id(8_200_001),
        },
    )
    assert added.status_code == 303, added.text
    found = await patient_named(platform, "王建国")
    patient_id = found.id if found is not None else None
    names = {"doctor": doctor_id, "session": session_id, "patient": patient_id}
    answers = []
    for method, path, form, _, _ in REFUSALS:
        data = {"csrf": csrf} | {k: v.format(**names) for k, v in form.items()}
        response = await (http.get(path) if method == "get" else http.post(path, data=data))
        shown = re.search(r"<code>([A-Z_]+)</code>", response.text)
        answers.append(
            (
                path,
                response.status_code,
                response.headers["content-type"].split(";")[0],
                shown.group(1) if shown else None,
            )
        )
    assert answers == [(path, status, "text/html", code) for _, path, _, status, code in REFUSALS]
