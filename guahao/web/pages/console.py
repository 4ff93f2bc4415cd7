"""The staff console's router: sign-in and sign-out, the hospital console, the authority's
view and the figures' exports, with their own ``console`` dependency and error pages.

It is a router of its own beside the citizen pages': a refusal renders the console's error
page and a missing staff session leads to the console's sign-in, never the citizens'.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.services.staff import StaffRole, StaffService
from guahao.web.citizen_session import CSRF_FIELD, check_csrf
from guahao.web.pages.audit_log_pages import AuditLogPages
from guahao.web.pages.authority_console import AuthorityConsolePages, ConsoleExports
from guahao.web.pages.blacklist_pages import BlacklistPages
from guahao.web.pages.console_assets import ConsoleAssets, charts_bundle
from guahao.web.pages.console_context import (
    ConsoleContext,
    ConsoleSignInRequired,
    next_or,
    provide_console,
    render_console,
)
from guahao.web.pages.hospital_console import HospitalConsolePages
from guahao.web.pages.page_context import status_of
from guahao.web.pages.region_rules_pages import RegionRulesPage
from guahao.web.staff_session import end_staff_session, start_staff_session

__all__ = ["console_router"]


def home_of(role: StaffRole) -> str:
    """Where a staff member lands after signing in."""
    return "/console/hospital/" if role is StaffRole.HOSPITAL_STAFF else "/console/authority/"


class ConsoleSignInPages(Controller):
    path = "/console"
    include_in_schema = False

    @get("/", name="console_home")
    async def home(self, console: NamedDependency[ConsoleContext]) -> Redirect:
        if console.staff is None:
            return Redirect(path="/console/sign-in", status_code=303)
        return Redirect(path=home_of(console.staff.role), status_code=303)

    @get("/sign-in", name="console_sign_in")
    async def form(
        self,
        console: NamedDependency[ConsoleContext],
        next_path: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Template:
        return render_console(
            console, "console/sign_in.html", next_path=next_or(next_path, "/console/"), username=""
        )

    @post("/sign-in", name="console_sign_in_verify", status_code=303)
    async def sign_in(
        self,
        console: NamedDependency[ConsoleContext],
        staff: NamedDependency[StaffService],
        client: NamedDependency[ClientContext],
        request: Request[Any, Any, Any],
    ) -> Any:
        """Username and password (wrong ones space out further attempts: the staff service)."""
        form = await request.form()
        fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        check_csrf(request, fields.get(CSRF_FIELD, ""))
        username = fields.get("username", "")[:64]
        next_path = next_or(fields.get("next"), "/console/")
        try:
            actor = await staff.authenticate(
                username=username, password=fields.get("password", "")[:200], client=client
            )
        except GuahaoError as exc:
            return render_console(
                console,
                "console/sign_in.html",
                status_code=status_of(exc),
                next_path=next_path,
                username=username,
                error=exc,
            )
        target = home_of(actor.role) if next_path == "/console/" else next_path
        response = Redirect(path=target, status_code=303)
        await start_staff_session(request, response, actor)
        return response

    @post("/sign-out", name="console_sign_out", status_code=303)
    async def sign_out(
        self, console: NamedDependency[ConsoleContext], request: Request[Any, Any, Any]
    ) -> Redirect:
        form = await request.form()
        check_csrf(request, str(form.get(CSRF_FIELD, "")))
        response = Redirect(path="/console/sign-in", status_code=303)
        await end_staff_session(request, response)
        return response


def _sign_in_first(_: Request[Any, Any, Any], exc: ConsoleSignInRequired) -> Response[Any]:
    return Redirect(path=f"/console/sign-in?next={quote(exc.next_path, safe='')}", status_code=303)


def _refused(request: Request[Any, Any, Any], exc: GuahaoError) -> Response[Any]:
    console: ConsoleContext | None = request.state.get("console")
    if console is None:
        from guahao.web.errors import exception_handlers

        response: Response[Any] = exception_handlers[GuahaoError](request, exc)
        return response
    return render_console(console, "console/error.html", status_code=status_of(exc), error=exc)


def console_router() -> Router:
    """Every console page; services come from the app-wide dependencies, ``console`` from
    here."""
    charts_bundle()  # read once, now, rather than on the first chart page's request
    return Router(
        path="/",
        route_handlers=[
            ConsoleSignInPages,
            HospitalConsolePages,
            AuthorityConsolePages,
            ConsoleExports,
            BlacklistPages,
            RegionRulesPage,
            AuditLogPages,
            ConsoleAssets,
        ],
        dependencies={"console": Provide(provide_console)},
        exception_handlers={ConsoleSignInRequired: _sign_in_first, GuahaoError: _refused},
        include_in_schema=False,
    )
