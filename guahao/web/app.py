"""``create_app(settings)``: the Litestar application, its lifespan owning the platform."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from guahao import __version__
from guahao.bootstrap import Platform, open_platform
from guahao.config import Settings
from guahao.platform.clock import Clock
from guahao.platform.services.readiness import Readiness
from guahao.web.auth import TokenIssuer
from guahao.web.dependencies import platform_dependencies
from guahao.web.errors import exception_handlers
from guahao.web.hospital_auth import HospitalTokens, token_endpoint
from guahao.web.idempotency import IdempotencyMiddleware
from guahao.web.routes.accounts import AccountController, PatientController
from guahao.web.routes.appeals import AppealController
from guahao.web.routes.authority import AuthorityController, StaffSignInController
from guahao.web.routes.bookings import BookingController
from guahao.web.routes.catalog import CatalogController
from guahao.web.routes.hospital_api import HospitalApiController
from guahao.web.routes.hospital_desk import HospitalDeskController
from guahao.web.routes.payments import PaymentController, SandboxCashierController
from guahao.web.routes.rules import RulesController
from guahao.web.routes.search import SearchController
from guahao.web.routes.waitlist import LotteryController, WaitlistController
from guahao.web.staff_auth import StaffTokenIssuer

__all__ = ["create_app"]


@get("/health", operation_id="health", tags=["operations"])
async def health(readiness: NamedDependency[Readiness]) -> dict[str, Any]:
    """Liveness and readiness: the database and Redis both answer."""
    await readiness.check()
    return {"status": "ok", "version": __version__}


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    platform: Platform | None = None,
) -> Litestar:
    """The app for ``settings``; pass ``platform`` to serve one that is already open."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if platform is not None:
            app.state.platform = platform
            yield
            return
        async with open_platform(settings, clock=clock) as opened:
            app.state.platform = opened
            yield

    return Litestar(
        route_handlers=[
            health,
            CatalogController,
            SearchController,
            AccountController,
            PatientController,
            BookingController,
            PaymentController,
            SandboxCashierController,
            AppealController,
            StaffSignInController,
            AuthorityController,
            WaitlistController,
            LotteryController,
            token_endpoint,
            HospitalApiController,
            RulesController,
            HospitalDeskController,
        ],
        dependencies=platform_dependencies(),
        exception_handlers=exception_handlers,
        middleware=[IdempotencyMiddleware],
        lifespan=[lifespan],
        state=State(
            {
                "tokens": TokenIssuer(settings.secret("secret_key"), settings.token_minutes),
                "hospital_tokens": HospitalTokens(settings.secret("secret_key")),
                "staff_tokens": StaffTokenIssuer(
                    settings.secret("secret_key"), settings.token_minutes
                ),
            }
        ),
        openapi_config=OpenAPIConfig(
            title="Guahao 区域统一预约挂号平台",
            version=__version__,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        debug=False,
    )
