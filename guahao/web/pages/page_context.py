"""What every page needs to render: language, elderly mode, who is signed in, the CSRF token,
and the server's clock (countdowns are computed from the platform's time, not the phone's).

``PageContext`` is a Litestar dependency (``page``); ``render`` turns it and a template into a
response, setting the CSRF cookie the first time a browser comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from guahao.platform.clock import Clock
from guahao.platform.errors import GuahaoError
from guahao.platform.services.inbox import Inbox
from guahao.web.citizen_session import (
    CSRF_FIELD,
    CSRF_HEADER,
    check_csrf,
    citizen_account,
    csrf_cookie,
    csrf_token_of,
)
from guahao.web.pages.messages import Language, Translator

__all__ = [
    "ELDER_COOKIE",
    "LANG_COOKIE",
    "PageContext",
    "SignInRequired",
    "local_path",
    "provide_page",
    "render",
    "see_other",
    "status_of",
    "verified_form",
]

LANG_COOKIE = "guahao_lang"
ELDER_COOKIE = "guahao_mode"
REGION_ZONE = ZoneInfo("Asia/Shanghai")


class SignInRequired(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a page that needs a signed-in citizen: the browser goes to sign in first."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def local_path(candidate: str | None, default: str = "/") -> str:
    """``candidate`` if it is a path on this site, else ``default`` (no open redirects).

    >>> local_path("/me/bookings"), local_path("//evil.example/"), local_path("https://x/")
    ('/me/bookings', '/', '/')
    """
    if candidate and candidate.startswith("/") and not candidate.startswith(("//", "/\\")):
        return candidate
    return default


@dataclass
class PageContext:
    """One request's page settings."""

    request: Request[Any, Any, Any]
    lang: Language
    elder: bool
    account_id: str | None
    csrf: str
    csrf_is_new: bool
    clock: Clock
    unread: int | None = None
    """Unread notifications of the signed-in account (the header's badge); ``None`` signed out."""
    t: Translator = field(init=False)

    def __post_init__(self) -> None:
        self.t = Translator(self.lang)

    @property
    def path(self) -> str:
        query = self.request.url.query
        return self.request.url.path + (f"?{query}" if query else "")

    def require_account(self) -> str:
        """The signed-in account, or off to sign in and back: to this page, or for a form
        post to the page the form was on (a post cannot be repeated by a redirect)."""
        if self.account_id is None:
            if self.request.method == "GET":
                raise SignInRequired(self.path)
            referer = urlsplit(self.request.headers.get("referer", ""))
            same_site = referer.netloc == self.request.url.netloc
            raise SignInRequired(local_path(referer.path if same_site else None))
        return self.account_id

    def now(self) -> datetime:
        return self.clock.now()

    def ms_until(self, instant: datetime | None) -> int:
        """Milliseconds from the platform's now to ``instant`` (never negative)."""
        if instant is None:
            return 0
        return max(0, int((instant - self.clock.now()).total_seconds() * 1000))

    @staticmethod
    def countdown(ms: int) -> str:
        """Time left as the page's script shows it (``m:ss``, ``h:mm:ss`` past an hour).

        >>> PageContext.countdown(61_000), PageContext.countdown(3_725_000)
        ('1:01', '1:02:05')
        """
        seconds = -(-max(0, ms) // 1000)
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

    def local(self, instant: datetime | None, pattern: str = "%m-%d %H:%M") -> str:
        """An instant as the region's wall time (the hospital's clock, what people read)."""
        if instant is None:
            return ""
        return instant.astimezone(REGION_ZONE).strftime(pattern)

    def weekday(self, instant: Any) -> str:
        names = (
            ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
            if self.lang == "zh"
            else ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        )
        return names[instant.weekday()]

    def switch_url(self, **prefs: str) -> str:
        query = "&".join(f"{k}={quote(v)}" for k, v in prefs.items())
        return f"/prefs?{query}&next={quote(self.path, safe='')}"


async def provide_page(
    request: Request[Any, Any, Any], state: State, inbox: NamedDependency[Inbox]
) -> PageContext:
    """The ``page`` dependency of every page handler."""
    lang_cookie = request.cookies.get(LANG_COOKIE, "")
    lang: Language = "en" if lang_cookie == "en" else "zh"
    csrf, is_new = csrf_token_of(request)
    account_id = await citizen_account(request)
    page = PageContext(
        request=request,
        lang=lang,
        elder=request.cookies.get(ELDER_COOKIE, "") == "elder",
        account_id=account_id,
        csrf=csrf,
        csrf_is_new=is_new,
        clock=state.platform.ports.clock,
        unread=await inbox.unread_count(account_id) if account_id else None,
    )
    request.state.page = page  # for the pages' error handler, which cannot await
    return page


def render(page: PageContext, template: str, status_code: int = 200, **context: Any) -> Template:
    """The page ``template`` with the shared context (``page``, ``t``) and cookies."""
    cookies = [csrf_cookie(page.request, page.csrf)] if page.csrf_is_new else []
    return Template(
        template_name=template,
        context={"page": page, "t": page.t, **context},
        cookies=cookies,
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


async def verified_form(page: PageContext) -> dict[str, str]:
    """The request's form fields, after checking its CSRF token (field or header)."""
    form = await page.request.form()
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    check_csrf(page.request, fields.get(CSRF_FIELD) or page.request.headers.get(CSRF_HEADER) or "")
    return fields


def see_other(path: str) -> Redirect:
    """After a form post, the browser fetches the next page (POST/redirect/GET)."""
    return Redirect(path=path, status_code=303)


def status_of(exc: GuahaoError) -> int:
    """The HTTP status a refusal has in the API, so a page answers with the same one."""
    from guahao.web.errors import STATUS_BY_CODE, STATUS_BY_KIND

    return STATUS_BY_CODE.get(exc.code, STATUS_BY_KIND.get(exc.kind, 400))
