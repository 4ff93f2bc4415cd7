"""The page a visit reminder's one-tap 退号 link opens (no sign-in: the signed token is the
credential).

Opening the link only shows the visit and, while it can still be cancelled, one button: link
previewers and mail scanners open links too, so the GET changes nothing. The button posts back
to the same address and the answer says what happened: cancelled, the link used already, the
hospital's deadline passed, or a link that is not valid. The form carries no CSRF token on
purpose: a forged post would need the token, and whoever has the token may cancel anyway.
"""

from __future__ import annotations

from typing import Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from guahao.platform.errors import GuahaoError
from guahao.platform.services.visit_reminders import OneTapVisit, VisitReminders
from guahao.web.pages.page_context import PageContext, render, status_of

__all__ = ["OneTapPages", "outcome_of"]

Outcome = Literal["open", "cancelled", "used", "past_deadline", "not_active", "invalid"]

_OUTCOME_BY_CODE: dict[str, Outcome] = {
    "ONE_TAP_LINK_USED": "used",
    "ONE_TAP_LINK_INVALID": "invalid",
    "CANCEL_DEADLINE_PASSED": "past_deadline",
}


def outcome_of(visit: OneTapVisit) -> Outcome:
    """What the page says about a link before anything is tapped.

    >>> base = dict(booking_id="b", hospital="h", department="d", doctor="x",
    ...             visit_at="2026-03-11 08:00", cancel_by="2026-03-10 17:00")
    >>> outcome_of(OneTapVisit(**base, link_used=False, confirmed=True, past_deadline=False))
    'open'
    >>> outcome_of(OneTapVisit(**base, link_used=True, confirmed=False, past_deadline=False))
    'used'
    >>> outcome_of(OneTapVisit(**base, link_used=False, confirmed=True, past_deadline=True))
    'past_deadline'
    """
    if visit.link_used:
        return "used"
    if not visit.confirmed:
        return "not_active"
    return "past_deadline" if visit.past_deadline else "open"


class OneTapPages(Controller):
    path = "/one-tap"
    include_in_schema = False

    @get("/{token:str}", name="one_tap")
    async def page(
        self,
        page: NamedDependency[PageContext],
        reminders: NamedDependency[VisitReminders],
        token: FromPath[str],
    ) -> Template:
        """The visit and, while it can be cancelled, the button."""
        try:
            visit = await reminders.link_visit(token)
        except GuahaoError as refused:
            return _page(page, token, None, "invalid", refused)
        return _page(page, token, visit, outcome_of(visit))

    @post("/{token:str}", name="one_tap_cancel", status_code=200)
    async def cancel(
        self,
        page: NamedDependency[PageContext],
        reminders: NamedDependency[VisitReminders],
        token: FromPath[str],
    ) -> Template:
        """The button: 退号 through the ordinary cancellation (deadline, single use)."""
        try:
            await reminders.cancel_by_link(token)
        except GuahaoError as refused:
            outcome = _OUTCOME_BY_CODE.get(refused.code, "not_active")
            visit = None if outcome == "invalid" else await reminders.link_visit(token)
            return _page(page, token, visit, outcome, refused)
        return _page(page, token, await reminders.link_visit(token), "cancelled")


def _page(
    page: PageContext,
    token: str,
    visit: OneTapVisit | None,
    outcome: Outcome,
    refused: GuahaoError | None = None,
) -> Template:
    return render(
        page,
        "one_tap.html",
        status_code=status_of(refused) if refused is not None else 200,
        token=token,
        visit=visit,
        outcome=outcome,
        error=refused,
    )
