"""Sign-in through the region's OpenID Connect identity provider (browser redirects).

Thin as every route: the relying party (``guahao.web.oidc``) verifies, the platform's
``federated_identities`` links, and the ``citizen_sessions`` the app chose signs the browser
in or out. A refused callback answers the catalogued error; nothing is linked or signed in.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect

from guahao.platform.error_codes import refuse
from guahao.platform.services.federated_identities import FederatedIdentities
from guahao.web.oidc import (
    COOKIE_PATH,
    FLOW_COOKIE,
    FLOW_SECONDS,
    ID_TOKEN_COOKIE,
    CitizenSessions,
    RelyingParty,
)

__all__ = ["OidcController"]

_Text = Annotated[str | None, QueryParameter(max_length=4096)]


class OidcController(Controller):
    path = COOKIE_PATH
    tags = ["sign-in"]  # noqa: RUF012

    @get("/login", operation_id="oidcSignIn", status_code=303)
    async def login(
        self,
        relying_party: NamedDependency[RelyingParty],
        next_path: Annotated[str | None, QueryParameter(name="next", max_length=500)] = None,
    ) -> Redirect:
        """Start a sign-in at the identity provider; ``next`` is where to land afterwards
        (a path on this site)."""
        url, flow = await relying_party.begin(next_path)
        response = Redirect(url, status_code=303)
        response.set_cookie(
            FLOW_COOKIE,
            flow,
            max_age=FLOW_SECONDS,
            path=COOKIE_PATH,
            secure=relying_party.secure_cookies,
            httponly=True,
            # Lax, not Strict: the provider's redirect back is a cross-site navigation
            samesite="lax",
        )
        return response

    @get("/callback", operation_id="oidcCallback", status_code=303)
    async def callback(
        self,
        request: Request[Any, Any, Any],
        relying_party: NamedDependency[RelyingParty],
        federated_identities: NamedDependency[FederatedIdentities],
        citizen_sessions: NamedDependency[CitizenSessions],
        code: _Text = None,
        oauth_state: Annotated[str | None, QueryParameter(name="state", max_length=4096)] = None,
        iss: _Text = None,
        error: _Text = None,
    ) -> Response[Any]:
        """Where the provider returns the browser: verify, link the account, sign in."""
        flow = relying_party.read_flow(request.cookies.get(FLOW_COOKIE))
        if error is not None:
            refuse("OIDC_SIGN_IN_DENIED", error=error[:100])
        verified = await relying_party.finish(flow, state=oauth_state, code=code, iss=iss)
        linked = await federated_identities.sign_in(verified.identity)
        response: Response[Any] = Redirect(flow.next, status_code=303)
        response.delete_cookie(FLOW_COOKIE, path=COOKIE_PATH)
        response.set_cookie(
            ID_TOKEN_COOKIE,
            verified.id_token,
            path=COOKIE_PATH,  # read back only by logout, as its id_token_hint
            secure=relying_party.secure_cookies,
            httponly=True,
            samesite="lax",
        )
        return await citizen_sessions.start(request, linked.account_id, response)

    @post("/logout", operation_id="oidcLogout", status_code=303)
    async def logout(
        self,
        request: Request[Any, Any, Any],
        relying_party: NamedDependency[RelyingParty],
        citizen_sessions: NamedDependency[CitizenSessions],
    ) -> Response[Any]:
        """End the session here, then at the provider (RP-initiated logout)."""
        url = await relying_party.logout_url(request.cookies.get(ID_TOKEN_COOKIE))
        response: Response[Any] = Redirect(url, status_code=303)
        response.delete_cookie(ID_TOKEN_COOKIE, path=COOKIE_PATH)
        return await citizen_sessions.end(request, response)
