"""What the OpenAPI document says about authentication: the schemes, and which one each
operation needs.

The requirement of an operation is read from the guards that enforce it, so the document
cannot drift from what the server does: a route guarded by ``require_account`` needs the
citizen bearer token, ``require_staff`` the staff bearer token (with the roles it lets through
as the requirement's role names, which OpenAPI 3.1 allows), ``require_hospital`` the
hospital's OAuth2 client-credentials token with the route's scope. A guard this module does
not know stops the app from starting (a new kind of guard must be declared here), and an
operation without a guard declares no requirement (anyone may call it).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OAuthFlow, OAuthFlows, SecurityRequirement, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.types import Guard

from guahao.web.auth import require_account
from guahao.web.citizen_session import SESSION_COOKIE
from guahao.web.hospital_auth import require_hospital
from guahao.web.staff_auth import require_staff

__all__ = [
    "CITIZEN_BEARER",
    "HOSPITAL_OAUTH2",
    "PAGE_SESSION",
    "SECURITY_SCHEMES",
    "STAFF_BEARER",
    "declare_security",
]

CITIZEN_BEARER = "citizenBearer"
STAFF_BEARER = "staffBearer"
HOSPITAL_OAUTH2 = "hospitalOAuth2"
PAGE_SESSION = "pageSession"

HOSPITAL_TOKEN_URL = "/api/v1/oauth/token"
HOSPITAL_SCOPES = {
    "hospital:push": "Push schedules, capacity, cancellations, check-ins, filings, stops",
    "hospital:read": "Read the hospital's own bookings and the schedule file template",
}

SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    CITIZEN_BEARER: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="A citizen's access token from `POST /api/v1/auth/token` (居民令牌).",
    ),
    STAFF_BEARER: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description=(
            "A staff member's access token from `POST /api/v1/staff/token` (工作人员令牌); "
            "the role (authority_admin, authority_auditor, hospital_staff) decides further."
        ),
    ),
    HOSPITAL_OAUTH2: SecurityScheme(
        type="oauth2",
        description="A hospital system's client credentials (医院接口, OAuth2).",
        flows=OAuthFlows(
            client_credentials=OAuthFlow(token_url=HOSPITAL_TOKEN_URL, scopes=HOSPITAL_SCOPES)
        ),
    ),
    PAGE_SESSION: SecurityScheme(
        type="apiKey",
        name=SESSION_COOKIE,
        security_scheme_in="cookie",
        description="The citizen pages' HTTP-only session cookie (browsers only).",
    ),
}

_STAFF_GUARD = f"{require_staff.__qualname__}.<locals>.guard"
_DEFAULT_HOSPITAL_SCOPE = "hospital:push"

# Operations whose authentication is not a guard: the page session is optional on sign-out.
_OPTIONAL: dict[str, list[SecurityRequirement]] = {"oidcLogout": [{PAGE_SESSION: []}, {}]}


def _requirement(guard: Guard, handler: HTTPRouteHandler) -> SecurityRequirement:
    function: Any = getattr(guard, "func", guard)  # sync guards come wrapped
    if function is require_account:
        return {CITIZEN_BEARER: []}
    if function is require_hospital:
        return {HOSPITAL_OAUTH2: [(handler.opt or {}).get("scope", _DEFAULT_HOSPITAL_SCOPE)]}
    if getattr(function, "__qualname__", "") == _STAFF_GUARD:
        # OpenAPI 3.1 lets a non-OAuth2 requirement list role names: the roles let through
        # (none listed: any staff role)
        roles = inspect.getclosurevars(function).nonlocals.get("roles", ())
        return {STAFF_BEARER: sorted(str(role) for role in roles)}
    raise LookupError(
        f"guard {function!r} of {handler.handler_name} has no security scheme: declare it in "
        "guahao/web/openapi_security.py"
    )


def declare_security(routes: Iterable[Any]) -> None:
    """Set each documented operation's ``security`` from its guards (see the module)."""
    for route in routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            requirements: list[SecurityRequirement] = []
            for guard in handler.resolve_guards():
                requirement = _requirement(guard, handler)
                if requirement not in requirements:
                    requirements.append(requirement)
            optional = _OPTIONAL.get(
                handler.operation_id if isinstance(handler.operation_id, str) else ""
            )
            handler.security = requirements or optional or None
