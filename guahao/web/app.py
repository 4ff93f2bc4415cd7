"""``create_app(settings)``: the Litestar application, its lifespan owning the platform."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, get
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components

from guahao import __version__
from guahao.bootstrap import Platform, open_platform
from guahao.config import Settings
from guahao.platform.clock import Clock, SystemClock
from guahao.platform.error_codes import refuse
from guahao.platform.services.readiness import Readiness
from guahao.web.auth import TokenIssuer
from guahao.web.citizen_session import PageSessions
from guahao.web.dependencies import platform_dependencies
from guahao.web.errors import exception_handlers
from guahao.web.front_answers import GZIP_LEVEL, GZIP_MINIMUM_SIZE, FrontAnswers, compress
from guahao.web.front_grants import FrontGrants
from guahao.web.hospital_auth import HospitalTokens, token_endpoint
from guahao.web.idempotency import IdempotencyMiddleware
from guahao.web.metrics import WebMetrics, metrics_endpoint, telemetry_middleware
from guahao.web.oidc import CitizenSessions, ClientRegistration, RelyingParty
from guahao.web.openapi_security import SECURITY_SCHEMES, declare_security
from guahao.web.pages import pages_router, static_router, template_config
from guahao.web.pages.console import console_router
from guahao.web.pages.live_availability import stop_hub
from guahao.web.pages.page_context import provide_page
from guahao.web.request_bodies import API_BODY_LIMIT
from guahao.web.request_logs import configure_logging
from guahao.web.routes.accounts import AccountController, PatientController
from guahao.web.routes.appeals import AppealController
from guahao.web.routes.authority import AuthorityController, StaffSignInController
from guahao.web.routes.authority_figures import AuthorityFiguresController
from guahao.web.routes.bookings import BookingController
from guahao.web.routes.catalog import CatalogController
from guahao.web.routes.hospital_api import HospitalApiController
from guahao.web.routes.hospital_desk import HospitalDeskController
from guahao.web.routes.oidc import OidcController
from guahao.web.routes.payment_reconciliation import PaymentReconciliationController
from guahao.web.routes.payments import PaymentController, cashier_routes
from guahao.web.routes.rebooking import (
    OneTapController,
    RebookingController,
)
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


def page_dependencies() -> dict[str, Provide]:
    """The citizen pages' own dependency, the page context (language, elderly mode, the signed-in
    account); services, ``client`` and ``clock`` come from the app-wide ones
    (``guahao.web.dependencies``). It lives on the pages' router: an app-wide ``page`` would
    shadow the API's ``page`` query parameters."""
    return {"page": Provide(provide_page)}


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    platform: Platform | None = None,
    identity_clock: Clock | None = None,
) -> Litestar:
    """The app for ``settings``; pass ``platform`` to serve one that is already open.

    ``identity_clock`` judges ID tokens and sign-in cookies against the identity provider's
    time (the machine's wall clock unless a test moves it), apart from the platform's clock.
    """
    tokens = TokenIssuer(settings.secret("secret_key"), settings.token_minutes)
    # sign-in through the identity provider: the relying party (None when no issuer is set)
    # and the seam that turns a verified account into a signed-in browser
    registration = ClientRegistration.from_settings(settings)
    citizen_sessions: CitizenSessions = PageSessions()

    @contextlib.asynccontextmanager
    async def relying_party_open(app: Litestar) -> AsyncIterator[None]:
        if registration is None:
            app.state.relying_party = None
            yield
            return
        relying_party = RelyingParty(
            registration,
            secret_key=settings.secret("secret_key").encode(),
            clock=identity_clock or SystemClock(),
        )
        app.state.relying_party = relying_party
        try:
            yield
        finally:
            await relying_party.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if platform is not None:
            app.state.platform = platform
            tokens.keep_time_with(platform.ports.clock)
            try:
                yield
            finally:
                await stop_hub(app.state)
            return
        async with open_platform(settings, clock=clock) as opened:
            app.state.platform = opened
            tokens.keep_time_with(opened.ports.clock)
            try:
                yield
            finally:
                await stop_hub(app.state)

    configure_logging()
    metrics = WebMetrics()

    def provide_relying_party(state: State) -> RelyingParty:
        found: RelyingParty | None = state.relying_party
        if found is None:
            refuse("OIDC_NOT_CONFIGURED")
        return found

    def provide_citizen_sessions() -> CitizenSessions:
        return citizen_sessions

    app = Litestar(
        route_handlers=[
            health,
            metrics_endpoint,
            CatalogController,
            SearchController,
            AccountController,
            PatientController,
            BookingController,
            PaymentController,
            *cashier_routes(settings.payment_gateway),
            AppealController,
            StaffSignInController,
            AuthorityController,
            AuthorityFiguresController,
            PaymentReconciliationController,
            WaitlistController,
            LotteryController,
            RebookingController,
            OneTapController,
            token_endpoint,
            HospitalApiController,
            RulesController,
            HospitalDeskController,
            # the pages' dependencies live on their router: an app-wide ``page`` would shadow
            # the API's ``page`` query parameters
            pages_router(dependencies=page_dependencies()),
            console_router(),
            static_router(),
            OidcController,
        ],
        dependencies=platform_dependencies()
        | {
            "relying_party": Provide(provide_relying_party, sync_to_thread=False),
            "citizen_sessions": Provide(provide_citizen_sessions, sync_to_thread=False),
        },
        template_config=template_config(),
        # Pages and JSON go out compressed (phones on poor networks); the live stream is
        # not, so that every event leaves at once.
        compression_config=CompressionConfig(
            backend="gzip",
            # one source with the front answers, which send the same gzip themselves
            minimum_size=GZIP_MINIMUM_SIZE,
            gzip_compress_level=GZIP_LEVEL,
            # streams must not wait in a compressor; the console's chart script and the
            # static files are gzipped once per process, off the event loop
            exclude=["^/live/", "^/console/hospital/live", "^/console/assets/", "^/static/"],
        ),
        exception_handlers=exception_handlers,
        request_max_body_size=API_BODY_LIMIT,  # refused while read: guahao/web/request_bodies.py
        # Litestar's default configuration sets the root logger to INFO, which turned on a
        # rendered request line per request (guahao.requests) whatever the operator's
        # log_level: the root logger is the operator's (``guahao`` sets it from settings).
        logging_config=LoggingConfig(configure_root_logger=False),
        # sold-out holds are answered before all of this (``FrontAnswers``): a refusal records
        # nothing
        middleware=[telemetry_middleware(metrics), IdempotencyMiddleware],
        lifespan=[lifespan, relying_party_open],
        state=State(
            {
                "tokens": tokens,
                "hospital_tokens": HospitalTokens(settings.secret("secret_key")),
                "staff_tokens": StaffTokenIssuer(
                    settings.secret("secret_key"), settings.token_minutes
                ),
                "metrics": metrics,
                "metrics_token": settings.secret("metrics_token"),
            }
        ),
        openapi_config=OpenAPIConfig(
            title="Guahao 区域统一预约挂号平台",
            version=__version__,
            path="/schema",
            # served from the swagger-ui-dist npm package (infra/setup.sh), never a CDN
            components=Components(security_schemes=dict(SECURITY_SCHEMES)),
            render_plugins=[
                SwaggerRenderPlugin(
                    js_url="/static/vendor/swagger-ui-bundle.js",
                    css_url="/static/vendor/swagger-ui.css",
                    standalone_preset_js_url="/static/vendor/swagger-ui-standalone-preset.js",
                    favicon="<link rel='icon' type='image/png' "
                    "href='/static/vendor/favicon-32x32.png'>",
                )
            ],
        ),
        debug=False,
    )
    declare_security(app.routes)
    # the crowd's sold-out holds and remembered reads, answered before Litestar's routing
    # and middleware (guahao/web/front_answers.py); everything else passes through
    # and so are granted holds, by the route's own call (guahao/web/front_grants.py)
    grants = FrontGrants(minimum_size=GZIP_MINIMUM_SIZE, compress=compress)
    app.asgi_handler = FrontAnswers(app.asgi_handler, metrics, grants=grants)
    return app
