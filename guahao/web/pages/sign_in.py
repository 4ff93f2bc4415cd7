"""Sign-in pages: phone number → SMS code → signed in (a cookie session); sign-out."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.services.sign_in_codes import SignInCodes
from guahao.web.citizen_session import end_citizen_session, start_citizen_session
from guahao.web.pages.page_context import (
    PageContext,
    local_path,
    render,
    status_of,
    verified_form,
)

__all__ = ["SignInPages"]


class SignInPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/sign-in", name="sign_in")
    async def form(
        self,
        page: NamedDependency[PageContext],
        next_path: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Template:
        return render(page, "sign_in.html", next_path=local_path(next_path), phone="", sent=False)

    @post("/sign-in/code", name="sign_in_code", status_code=200)
    async def send_code(
        self,
        page: NamedDependency[PageContext],
        sign_in_codes: NamedDependency[SignInCodes],
        client: NamedDependency[ClientContext],
    ) -> Template:
        form = await verified_form(page)
        next_path = local_path(form.get("next"))
        raw = form.get("phone", "")
        try:
            phone = await sign_in_codes.send(raw, client)
        except GuahaoError as exc:
            return render(
                page,
                "sign_in.html",
                status_code=status_of(exc),
                next_path=next_path,
                phone=raw,
                sent=False,
                error=exc,
            )
        return render(page, "sign_in.html", next_path=next_path, phone=phone, sent=True)

    @post("/sign-in", name="sign_in_verify", status_code=303)
    async def verify(
        self,
        page: NamedDependency[PageContext],
        sign_in_codes: NamedDependency[SignInCodes],
        client: NamedDependency[ClientContext],
        request: Request[Any, Any, Any],
    ) -> Any:
        form = await verified_form(page)
        next_path = local_path(form.get("next"))
        phone = form.get("phone", "")
        try:
            result = await sign_in_codes.verify(phone, form.get("code", ""), client)
        except GuahaoError as exc:
            return render(
                page,
                "sign_in.html",
                status_code=status_of(exc),
                next_path=next_path,
                phone=phone,
                sent=True,
                error=exc,
            )
        response = Redirect(path=next_path, status_code=303)
        await start_citizen_session(request, response, result.account_id)
        return response

    @post("/sign-out", name="sign_out", status_code=303)
    async def sign_out(
        self, page: NamedDependency[PageContext], request: Request[Any, Any, Any]
    ) -> Redirect:
        await verified_form(page)
        response = Redirect(path="/", status_code=303)
        await end_citizen_session(request, response)
        return response
