"""The pages of prepaid waits, rebooking offers and the one-tap 退号 link over HTTP, on both
databases: their forms need the CSRF token, each refusal comes back as a page with the
platform's code and the API's status (never a server error), a unit taken meanwhile is
shown on the offers page and the offer stays open, and a hospital that takes no payment
online adds no prepayment step."""

from __future__ import annotations

import re

import httpx
import pytest

from guahao.bootstrap import Platform
from guahao.platform.hospitals import PaymentMode, Period
from tests.e2e.test_citizen_session import csrf_of, signed_in
from tests.fixtures.platforms import SESSION_DAY, confirmed_booking, patient_named, resident_id
from tests.integration.offer_scenarios import (
    THURSDAY,
    deliver,
    one_slot_clinic,
    publish_week,
    sell_out,
    session_on,
    slots_of,
)

TWO_DAYS = ((SESSION_DAY.weekday(), Period.MORNING), (THURSDAY.weekday(), Period.MORNING))

FORMS = ("/me/waits/w1/pay", "/me/offers/o1/accept", "/me/offers/o1/decline")


def code_of(response: httpx.Response) -> str | None:
    shown = re.search(r"<code>([A-Z_]+)</code>", response.text)
    return shown.group(1) if shown else None


async def page_account(
    platform: Platform, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> tuple[str, str, str]:
    """Signed in on the pages with one patient: (account id, patient id, CSRF token)."""
    await signed_in(http, caplog)
    csrf = await csrf_of(http, "/me/")
    added = await http.post(
        "/me/patients",
        data={
            "csrf": csrf,
            "name": "周玉梅",
            "relation": "self",
            "document_type": "resident_id",
            "document_number": resident_id(8_400_001),
        },
    )
    assert added.status_code == 303, added.text
    patient = await patient_named(platform, "周玉梅")
    assert patient is not None
    return patient.account_id, patient.id, csrf


async def test_every_prepayment_and_offer_form_needs_its_csrf_token(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await signed_in(http, caplog)
    for path in FORMS:
        refused = await http.post(path, data={"slot_id": "s1"})
        assert (refused.status_code, code_of(refused)) == (403, "CSRF_TOKEN_INVALID"), path


async def test_unknown_waits_offers_and_links_are_pages_with_their_codes(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await signed_in(http, caplog)
    csrf = await csrf_of(http, "/me/")
    asked = [
        ("get", "/me/waits/no-such-wait/pay"),
        ("post", "/me/waits/no-such-wait/pay"),
        ("post", "/me/offers/no-such-offer/accept"),
        ("post", "/me/offers/no-such-offer/decline"),
        ("get", "/one-tap/no-such-reminder.forged"),
        ("post", "/one-tap/no-such-reminder.forged"),
    ]
    answers = []
    for method, path in asked:
        response = await (
            http.get(path) if method == "get" else http.post(path, data={"csrf": csrf})
        )
        answers.append((path, response.status_code, response.headers["content-type"][:9]))
        answers.append((path, code_of(response)))
    assert answers == [
        ("/me/waits/no-such-wait/pay", 404, "text/html"),
        ("/me/waits/no-such-wait/pay", "WAITLIST_ENTRY_NOT_FOUND"),
        ("/me/waits/no-such-wait/pay", 404, "text/html"),
        ("/me/waits/no-such-wait/pay", "WAITLIST_ENTRY_NOT_FOUND"),
        ("/me/offers/no-such-offer/accept", 404, "text/html"),
        ("/me/offers/no-such-offer/accept", "REBOOKING_OFFER_NOT_FOUND"),
        ("/me/offers/no-such-offer/decline", 404, "text/html"),
        ("/me/offers/no-such-offer/decline", "REBOOKING_OFFER_NOT_FOUND"),
        ("/one-tap/no-such-reminder.forged", 403, "text/html"),
        ("/one-tap/no-such-reminder.forged", "ONE_TAP_LINK_INVALID"),
        ("/one-tap/no-such-reminder.forged", 403, "text/html"),
        ("/one-tap/no-such-reminder.forged", "ONE_TAP_LINK_INVALID"),
    ]


async def test_a_unit_taken_meanwhile_is_shown_on_the_offers_page_and_the_offer_stays_open(
    platform: Platform, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await publish_week(
        platform, one_slot_clinic(PaymentMode.ONLINE_SELF_PAY_OR_INSURANCE, sessions=TWO_DAYS)
    )
    wednesday = await session_on(platform, SESSION_DAY)
    [slot] = await slots_of(platform, wednesday.id)
    account_id, _, csrf = await page_account(platform, http, caplog)
    _, booking_id, _ = await confirmed_booking(platform, slot, account_id=account_id)
    await platform.bookings.cancel_by_hospital(booking_id, reason="HIS lost the patient")
    await deliver(platform)
    [offer] = await platform.rebooking.offers(account_id)
    [proposal] = offer.proposals
    listed = await http.get("/me/offers")
    assert listed.status_code == 200
    assert offer.answer_by in listed.text
    assert 'id="offer-count"' in (await http.get("/me/")).text

    await sell_out(platform, proposal.session_id)  # someone else takes Thursday's unit
    taken = await http.post(
        f"/me/offers/{offer.id}/accept", data={"csrf": csrf, "slot_id": proposal.slot_id}
    )
    assert (taken.status_code, code_of(taken)) == (409, "REBOOKING_UNIT_GONE")
    assert 'data-status="open"' in taken.text
    [still] = await platform.rebooking.offers(account_id)
    assert still.status == "open"


async def test_where_nothing_is_paid_online_joining_a_wait_adds_no_prepayment_step(
    platform: Platform, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await publish_week(platform, one_slot_clinic(PaymentMode.PAY_AT_HOSPITAL))
    sess = await session_on(platform, SESSION_DAY)
    await sell_out(platform, sess.id)
    account_id, patient_id, csrf = await page_account(platform, http, caplog)
    joined = await http.post(
        "/me/waits/join", data={"csrf": csrf, "session_id": sess.id, "patient_id": patient_id}
    )
    [wait] = await platform.waitlist.waits(account_id)
    assert wait.prepayment is None
    assert (joined.status_code, joined.headers["location"]) == (303, f"/me/waits#wait-{wait.id}")
    nothing_to_pay = await http.get(f"/me/waits/{wait.id}/pay")
    assert (nothing_to_pay.status_code, nothing_to_pay.headers["location"]) == (
        303,
        f"/me/waits#wait-{wait.id}",
    )
    mine = await http.get("/me/waits")
    assert "prepay" not in mine.text
