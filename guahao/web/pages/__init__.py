"""The citizen product: server-rendered pages (Jinja2), their static files and live updates.

``pages_router()`` is everything a browser opens; ``template_config()`` the Jinja2 engine over
``guahao/web/templates``; ``static_router()`` serves ``guahao/web/static`` (our own CSS and
script, and in ``vendor/`` what ``infra/setup.sh`` copied from npm packages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, Router
from litestar.di import Provide
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.template import TemplateConfig

from guahao.platform.errors import GuahaoError
from guahao.web.pages.booking_flow import BookingFlowPages
from guahao.web.pages.browsing import BrowsingPages
from guahao.web.pages.live_availability import LivePages
from guahao.web.pages.my_account import MyPages
from guahao.web.pages.one_tap import OneTapPages
from guahao.web.pages.page_context import (
    PageContext,
    SignInRequired,
    render,
    status_of,
)
from guahao.web.pages.rebooking import OfferPages
from guahao.web.pages.sign_in import SignInPages
from guahao.web.pages.static_assets import static_assets_router
from guahao.web.pages.waiting import LotteryPages, WaitPages

__all__ = ["STATIC_DIR", "pages_router", "static_router", "template_config"]

WEB_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATE_DIR = WEB_DIR / "templates"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    def configure(engine: JinjaTemplateEngine) -> None:
        engine.engine.trim_blocks = True
        engine.engine.lstrip_blocks = True

    return TemplateConfig(
        directory=TEMPLATE_DIR, engine=JinjaTemplateEngine, engine_callback=configure
    )


def static_router() -> Router:
    return static_assets_router(STATIC_DIR)


def _sign_in_first(_: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    return Redirect(path=f"/sign-in?next={quote(exc.next_path, safe='')}", status_code=303)


def _refused(request: Request[Any, Any, Any], exc: GuahaoError) -> Response[Any]:
    """A refusal on a page: the same code and message as the API, as a page."""
    page: PageContext | None = request.state.get("page")
    if page is None:  # refused before the page context existed (a path parameter, say)
        from guahao.web.errors import exception_handlers

        handler = exception_handlers[GuahaoError]
        response: Response[Any] = handler(request, exc)
        return response
    return render(page, "error.html", status_code=status_of(exc), error=exc)


def pages_router(dependencies: dict[str, Provide]) -> Router:
    """Every page, with ``dependencies`` (the services by Platform field name, ``page``,
    ``client`` and ``clock``) on this router only."""
    return Router(
        path="/",
        route_handlers=[
            BrowsingPages,
            SignInPages,
            BookingFlowPages,
            MyPages,
            WaitPages,
            LotteryPages,
            LivePages,
            OfferPages,
            OneTapPages,
        ],
        dependencies=dependencies,
        exception_handlers={SignInRequired: _sign_in_first, GuahaoError: _refused},
        include_in_schema=False,
    )
