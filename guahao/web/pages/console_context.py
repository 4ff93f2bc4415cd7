"""What every console page needs: language, the signed-in staff member, the CSRF token, the
platform's clock, and the role checks each page makes before it reads anything.

``ConsoleContext`` is the console router's ``console`` dependency. A page states who may open
it (``console.require(...)``: off to sign in when nobody is, ``STAFF_ROLE_REQUIRED`` for a
wrong role) and, before any change, ``console.require_change(...)``, which also refuses
auditors: they read everything and change nothing, whatever a crafted POST says. The services
check roles and hospitals again; the pages only decide what to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from litestar import Request
from litestar.datastructures import State
from litestar.response import Template

from guahao.platform.clock import Clock
from guahao.platform.error_codes import refuse
from guahao.platform.services.staff import StaffActor, StaffRole
from guahao.web.citizen_session import (
    CSRF_FIELD,
    CSRF_HEADER,
    check_csrf,
    csrf_cookie,
    csrf_token_of,
)
from guahao.web.pages.console_assets import charts_bundle
from guahao.web.pages.console_messages import ConsoleTranslator
from guahao.web.pages.messages import Language
from guahao.web.pages.page_context import LANG_COOKIE, REGION_ZONE, SignInRequired, local_path
from guahao.web.staff_session import signed_in_staff

__all__ = [
    "AUTHORITY",
    "HOSPITAL",
    "ConsoleContext",
    "ConsoleSignInRequired",
    "flat_rules",
    "next_or",
    "provide_console",
    "render_console",
]

AUTHORITY = (StaffRole.AUTHORITY_ADMIN, StaffRole.AUTHORITY_AUDITOR)
HOSPITAL = (StaffRole.HOSPITAL_STAFF,)


class ConsoleSignInRequired(SignInRequired):
    """A console page opened without a staff session: off to the console's sign-in."""


@dataclass
class ConsoleContext:
    """One console request's settings."""

    request: Request[Any, Any, Any]
    lang: Language
    staff: StaffActor | None
    csrf: str
    csrf_is_new: bool
    clock: Clock
    t: ConsoleTranslator = field(init=False)
    elder: bool = False  # the shared error box reads it

    def __post_init__(self) -> None:
        self.t = ConsoleTranslator(self.lang)

    @property
    def path(self) -> str:
        query = self.request.url.query
        return self.request.url.path + (f"?{query}" if query else "")

    def require(self, *roles: StaffRole) -> StaffActor:
        """The signed-in staff member if they hold one of ``roles``."""
        if self.staff is None:
            next_path = self.path if self.request.method == "GET" else "/console/"
            raise ConsoleSignInRequired(next_path)
        if self.staff.role not in roles:
            refuse(
                "STAFF_ROLE_REQUIRED",
                role=self.staff.role.value,
                needs=[r.value for r in roles],
            )
        return self.staff

    async def require_change(self, *roles: StaffRole) -> tuple[StaffActor, dict[str, str]]:
        """For a form post: the CSRF token checked, then a role that may change things
        (never an auditor), and the form's fields."""
        form = await self.request.form()
        fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        check_csrf(
            self.request, fields.get(CSRF_FIELD) or self.request.headers.get(CSRF_HEADER) or ""
        )
        changers = tuple(r for r in roles if r is not StaffRole.AUTHORITY_AUDITOR)
        return self.require(*changers), fields

    @property
    def can_change(self) -> bool:
        return self.staff is not None and self.staff.role is not StaffRole.AUTHORITY_AUDITOR

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        return self.clock.now().astimezone(REGION_ZONE).date()

    def local(self, instant: datetime | None, pattern: str = "%m-%d %H:%M") -> str:
        if instant is None:
            return ""
        return instant.astimezone(REGION_ZONE).strftime(pattern)

    def switch_url(self, **prefs: str) -> str:
        query = "&".join(f"{k}={quote(v)}" for k, v in prefs.items())
        return f"/prefs?{query}&next={quote(self.path, safe='')}"

    @staticmethod
    def percent(value: float | None) -> str:
        """A rate as people read it (``—`` where there was nothing to divide by).

        >>> ConsoleContext.percent(0.4567), ConsoleContext.percent(None)
        ('45.7%', '—')
        """
        return "—" if value is None else f"{value * 100:.1f}%"


async def provide_console(request: Request[Any, Any, Any], state: State) -> ConsoleContext:
    lang: Language = "en" if request.cookies.get(LANG_COOKIE, "") == "en" else "zh"
    csrf, is_new = csrf_token_of(request)
    console = ConsoleContext(
        request=request,
        lang=lang,
        staff=await signed_in_staff(request),
        csrf=csrf,
        csrf_is_new=is_new,
        clock=state.platform.ports.clock,
    )
    request.state.console = console  # for the router's error handler, which cannot await
    return console


def render_console(
    console: ConsoleContext, template: str, status_code: int = 200, **context: Any
) -> Template:
    cookies = [csrf_cookie(console.request, console.csrf)] if console.csrf_is_new else []
    return Template(
        template_name=template,
        context={"page": console, "t": console.t, "charts_url": charts_bundle().url, **context},
        cookies=cookies,
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


def next_or(candidate: str | None, default: str) -> str:
    """``candidate`` if it is a console path, else ``default``."""
    found = local_path(candidate, default)
    return found if found.startswith("/console") else default


def flat_rules(rules: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested rules or policies as dotted keys, the way rule changes name them.

    >>> flat_rules({"limits": {"per_day": 2}, "hold_minutes": 5})
    [('hold_minutes', 5), ('limits.per_day', 2)]
    """
    out: list[tuple[str, Any]] = []
    for key, value in rules.items():
        if isinstance(value, dict):
            out.extend(flat_rules(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return sorted(out)
