"""Sign-in through the region's identity provider, end to end, on both databases.

The provider is the certified ``oidc-provider`` on loopback; the platform is the real app
served by uvicorn on a real socket; the citizen's browser is an httpx client that follows the
redirects between them, keeps their cookies and fills in the provider's login and consent
forms. Only the relying party's clock is ours to move (to let an ID token expire).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import msgspec
import pytest
import uvicorn
from joserfc.jwk import RSAKey
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.clock import ManualClock
from guahao.platform.persistence.tables import AccountRow, FederatedIdentityRow
from guahao.web.app import create_app
from guahao.web.auth import TokenIssuer
from guahao.web.citizen_session import SESSION_COOKIE
from guahao.web.citizen_session import CitizenSessions as SessionStore
from guahao.web.oidc import FLOW_COOKIE, ID_TOKEN_COOKIE
from tests.e2e.in_process_server import InProcessServer
from tests.e2e.support import register
from tests.fixtures.identity_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    IdentityProvider,
    ProviderBrowser,
    new_signing_key,
    start_identity_provider,
)


@dataclass
class Site:
    """The platform at ``base`` signing in through ``provider``."""

    base: str
    provider: IdentityProvider
    clock: ManualClock
    platform: Platform
    tokens: TokenIssuer

    @property
    def callback(self) -> str:
        return f"{self.base}/auth/oidc/callback"

    @contextlib.asynccontextmanager
    async def browser(self) -> AsyncIterator[ProviderBrowser]:
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
            yield ProviderBrowser(http)

    async def start(self, browser: ProviderBrowser, next_path: str = "/me") -> str:
        """Open the platform's sign-in; returns the provider's authorization URL."""
        started = await browser.get(f"{self.base}/auth/oidc/login?next={next_path}")
        assert started.status_code == 303, started.text
        return started.headers["location"]

    async def sign_in(
        self, browser: ProviderBrowser, login: str, next_path: str = "/me"
    ) -> httpx.Response:
        """The whole journey; returns the platform's answer to the provider's redirect."""
        authorize = await self.start(browser, next_path)
        back = await browser.sign_in_at_provider(authorize, login, stop_at=self.callback)
        return await browser.get(back)

    async def links(self) -> list[tuple[str, str, str]]:
        async with self.platform.ports.sessions() as session:
            rows = await session.execute(
                select(
                    FederatedIdentityRow.issuer,
                    FederatedIdentityRow.subject,
                    FederatedIdentityRow.account_id,
                ).order_by(FederatedIdentityRow.linked_at)
            )
            return [tuple(r) for r in rows.all()]  # type: ignore[misc]

    async def account_count(self) -> int:
        async with self.platform.ports.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(AccountRow)) or 0)

    async def signed_in_account(self, browser: ProviderBrowser) -> str | None:
        """The account of the browser's page session (the cookie the pages read)."""
        token = browser.http.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        return await SessionStore(self.platform.redis, self.platform.settings).account_of(token)


@contextlib.asynccontextmanager
async def open_site(
    platform: Platform,
    tmp_path: Path,
    provider_key: RSAKey,
    *,
    client_key: RSAKey | None = None,
) -> AsyncIterator[Site]:
    """The platform served on a real socket, signing in through a provider of its own; with
    ``client_key`` the platform authenticates to the provider with ``private_key_jwt``."""
    # The platform's socket is bound first, so the provider can be told the real redirect URI.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client: dict[str, Any] = {"oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET}
    extra_clients: list[dict[str, Any]] = []
    if client_key is not None:
        key_file = tmp_path / "client-key.pem"
        key_file.write_bytes(client_key.as_pem(private=True))
        client = {"oidc_client_id": "guahao-jwt", "oidc_private_key_file": str(key_file)}
        extra_clients.append(
            {
                "client_id": "guahao-jwt",
                "redirect_uris": [f"{base}/auth/oidc/callback"],
                "post_logout_redirect_uris": [f"{base}/"],
                "token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_signing_alg": "RS256",
                "jwks": {"keys": [client_key.as_dict(private=False)]},
            }
        )
    async with start_identity_provider(
        tmp_path,
        redirect_uris=[f"{base}/auth/oidc/callback"],
        post_logout_redirect_uris=[f"{base}/"],
        keys=[provider_key],
        extra_clients=extra_clients,
    ) as provider:
        settings = msgspec.structs.replace(
            platform.settings, public_url=base, oidc_issuer=provider.issuer, **client
        )
        clock = ManualClock(datetime.now(UTC))
        app = create_app(settings, platform=platform, identity_clock=clock)
        server = InProcessServer(
            uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=5)
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(15):
                while not server.started:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
            yield Site(base, provider, clock, platform, app.state.tokens)
        finally:
            server.stop()
            async with asyncio.timeout(15):
                await task
            sock.close()


@pytest.fixture
async def site(
    platform: Platform, tmp_path: Path, provider_signing_key: RSAKey
) -> AsyncIterator[Site]:
    async with open_site(platform, tmp_path, provider_signing_key) as opened:
        yield opened


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


# ------------------------------------------------------------------------------- sign-in


async def test_first_sign_in_makes_an_account_for_the_verified_phone_and_signs_the_browser_in(
    site: Site,
) -> None:
    async with site.browser() as browser:
        authorize = await site.start(browser, "/me/bookings")
        query = parse_qs(urlsplit(authorize).query)
        assert authorize.startswith(f"{site.provider.issuer}/auth?")
        assert query["client_id"] == [CLIENT_ID]
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43  # base64url of a SHA-256
        assert query["redirect_uri"] == [site.callback]
        assert set(query["scope"][0].split()) >= {"openid", "phone"}
        assert query["state"][0]
        assert query["nonce"][0]
        flow_cookie = next(c for c in browser.http.cookies.jar if c.name == FLOW_COOKIE)
        assert flow_cookie.has_nonstandard_attr("HttpOnly")
        assert flow_cookie.path == "/auth/oidc"
        assert query["state"][0] not in flow_cookie.value.split(".")[1]  # signed, not a copy

        back = await browser.sign_in_at_provider(authorize, "alice", stop_at=site.callback)
        landed = await browser.get(back)

        assert landed.status_code == 303, landed.text
        assert landed.headers["location"] == "/me/bookings"
        account_id = await site.signed_in_account(browser)
        assert account_id is not None
        assert FLOW_COOKIE not in browser.http.cookies  # used once
        session_cookie = next(c for c in browser.http.cookies.jar if c.name == SESSION_COOKIE)
        assert session_cookie.has_nonstandard_attr("HttpOnly")
        assert await site.links() == [(site.provider.issuer, "alice", account_id)]
        async with site.platform.ports.sessions() as session:
            account = await session.get(AccountRow, account_id)
        assert account is not None
        vault = site.platform.ports.vault
        assert account.phone_hash == vault.index("phone", "13800138000")  # ASCII digits
        assert account.display_name == "李丽"

        # the session is the pages' own: the signed-in account's pages open
        me = await browser.http.get(f"{site.base}/me/bookings")
        assert me.status_code == 200, me.text


async def test_a_second_sign_in_finds_the_same_account(site: Site) -> None:
    async with site.browser() as first:
        assert (await site.sign_in(first, "alice")).status_code == 303
        account_id = await site.signed_in_account(first)
    async with site.browser() as second:  # another phone: the provider asks to log in again
        assert (await site.sign_in(second, "alice")).status_code == 303
        assert await site.signed_in_account(second) == account_id
    assert await site.links() == [(site.provider.issuer, "alice", account_id)]
    assert await site.account_count() == 1


async def test_a_verified_phone_of_an_existing_account_links_the_identity_to_it(
    site: Site,
) -> None:
    async with site.browser() as browser:
        account_id = await register(browser.http, "13900139000", "correct-horse-9", base=site.base)

        assert (await site.sign_in(browser, "bob")).status_code == 303
        assert await site.signed_in_account(browser) == account_id
    assert await site.links() == [(site.provider.issuer, "bob", account_id)]
    assert await site.account_count() == 1


@pytest.mark.parametrize("login", ["mallory", "carol"], ids=["unverified-phone", "no-phone"])
async def test_without_a_verified_phone_nothing_is_linked_or_signed_in(
    site: Site, login: str
) -> None:
    async with site.browser() as browser:
        await register(browser.http, "13900139000", "correct-horse-9", base=site.base)
        refused = await site.sign_in(browser, login)
        assert _error(refused) == (403, "OIDC_PHONE_REQUIRED")
        assert refused.json()["message"]["zh"]
        assert refused.json()["message"]["en"]
        assert await site.signed_in_account(browser) is None
    assert await site.links() == []
    assert await site.account_count() == 1


async def test_the_platform_can_authenticate_to_the_provider_with_a_private_key(
    platform: Platform, tmp_path: Path, provider_signing_key: RSAKey
) -> None:
    client_key = new_signing_key("guahao-client-key")
    async with (
        open_site(platform, tmp_path, provider_signing_key, client_key=client_key) as jwt_site,
        jwt_site.browser() as browser,
    ):
        authorize = await jwt_site.start(browser)
        assert parse_qs(urlsplit(authorize).query)["client_id"] == ["guahao-jwt"]
        back = await browser.sign_in_at_provider(authorize, "alice", stop_at=jwt_site.callback)
        landed = await browser.get(back)
        assert landed.status_code == 303, landed.text
        assert await jwt_site.signed_in_account(browser) is not None


async def test_next_never_leaves_the_site(site: Site) -> None:
    async with site.browser() as browser:
        landed = await site.sign_in(browser, "alice", next_path="//evil.example/steal")
        assert landed.headers["location"] == "/"


# -------------------------------------------------------------------------------- logout


async def test_logout_ends_the_local_session_and_then_the_provider_session(site: Site) -> None:
    async with site.browser() as browser:
        await site.sign_in(browser, "alice")
        id_token = browser.http.cookies[ID_TOKEN_COOKIE]
        assert await site.signed_in_account(browser) is not None

        out = await browser.post(f"{site.base}/auth/oidc/logout")

        assert out.status_code == 303, out.text
        assert await site.signed_in_account(browser) is None
        assert ID_TOKEN_COOKIE not in browser.http.cookies
        end_session = out.headers["location"]
        assert end_session.startswith(f"{site.provider.issuer}/session/end?")
        params = parse_qs(urlsplit(end_session).query)
        assert params["id_token_hint"] == [id_token]
        assert params["post_logout_redirect_uri"] == [f"{site.base}/"]
        assert params["client_id"] == [CLIENT_ID]

        # the provider accepts the hint and the registered URI, and sends the browser home
        final = await browser.confirm_provider_logout(end_session)
        assert final.is_redirect, final.text[:300]
        assert final.headers["location"].startswith(f"{site.base}/")

        # its session is gone too: signing in again asks for the login
        authorize = await site.start(browser)
        page = await browser.get(authorize)
        while page.is_redirect:
            page = await browser.get(str(httpx.URL(str(page.url)).join(page.headers["location"])))
        assert 'name="prompt" value="login"' in page.text


# ------------------------------------------------------------------------------ refusals


async def test_an_expired_id_token_is_refused(site: Site) -> None:
    async with site.browser() as browser:
        authorize = await site.start(browser)
        back = await browser.sign_in_at_provider(authorize, "alice", stop_at=site.callback)
        # the provider issues 120-second ID tokens; five minutes later (the sign-in itself is
        # still within its ten) the token it will hand over is stale
        site.clock.advance(minutes=5)
        refused = await browser.get(back)
        assert _error(refused) == (403, "ID_TOKEN_EXPIRED")
        assert await site.signed_in_account(browser) is None
    assert await site.links() == []
    assert await site.account_count() == 0


async def test_a_state_that_is_not_this_browsers_is_refused(site: Site) -> None:
    async with site.browser() as browser:
        authorize = await site.start(browser)
        forged = _with_query(authorize, state="attacker-chosen-state")
        back = await browser.sign_in_at_provider(forged, "alice", stop_at=site.callback)
        refused = await browser.get(back)
        assert _error(refused) == (403, "OIDC_STATE_INVALID")
        assert refused.json()["detail"]["reason"] == "state_mismatch"
        assert await site.signed_in_account(browser) is None
    assert await site.links() == []


async def test_a_callback_in_another_browser_is_refused(site: Site) -> None:
    async with site.browser() as victim:
        authorize = await site.start(victim)
        back = await victim.sign_in_at_provider(authorize, "alice", stop_at=site.callback)
    async with site.browser() as other:  # no flow cookie: the sign-in did not start here
        refused = await other.get(back)
        assert _error(refused) == (403, "OIDC_STATE_INVALID")
        assert await site.signed_in_account(other) is None
    assert await site.links() == []


async def test_a_nonce_that_is_not_this_browsers_is_refused(site: Site) -> None:
    async with site.browser() as browser:
        authorize = await site.start(browser)
        forged = _with_query(authorize, nonce="replayed-nonce")
        back = await browser.sign_in_at_provider(forged, "alice", stop_at=site.callback)
        refused = await browser.get(back)
        assert _error(refused) == (403, "ID_TOKEN_INVALID")
        assert refused.json()["detail"]["claim"] == "nonce"
        assert await site.signed_in_account(browser) is None
    assert await site.links() == []


async def test_a_code_is_good_for_one_sign_in_only(site: Site) -> None:
    async with site.browser() as browser:
        authorize = await site.start(browser)
        flow = browser.http.cookies[FLOW_COOKIE]
        back = await browser.sign_in_at_provider(authorize, "alice", stop_at=site.callback)
        assert (await browser.get(back)).status_code == 303
    async with site.browser() as replay:
        replay.http.cookies.set(FLOW_COOKIE, flow, domain="127.0.0.1", path="/auth/oidc")
        refused = await replay.get(back)
        assert _error(refused) == (403, "OIDC_SIGN_IN_DENIED")
        assert await site.signed_in_account(replay) is None
    assert len(await site.links()) == 1


async def test_a_sign_in_abandoned_at_the_provider_is_refused(site: Site) -> None:
    async with site.browser() as browser:
        authorize = await site.start(browser)
        page = await browser.get(authorize)
        interaction = str(page.url.join(page.headers["location"]))
        aborted = await browser.get(f"{interaction}/abort")
        while aborted.is_redirect:
            location = str(aborted.url.join(aborted.headers["location"]))
            if location.startswith(site.callback):
                break
            aborted = await browser.get(location)
        refused = await browser.get(location)
        assert _error(refused) == (403, "OIDC_SIGN_IN_DENIED")
        assert refused.json()["detail"]["error"] == "access_denied"


async def test_without_an_issuer_sign_in_is_not_offered(http: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/auth/oidc/login"), ("POST", "/auth/oidc/logout")):
        answer = await http.request(method, path)
        assert _error(answer) == (404, "OIDC_NOT_CONFIGURED")
    callback = await http.get("/auth/oidc/callback", params={"code": "x", "state": "y"})
    assert _error(callback) == (404, "OIDC_NOT_CONFIGURED")
