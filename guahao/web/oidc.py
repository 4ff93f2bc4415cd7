"""The platform as an OpenID Connect relying party of the region's identity provider.

The authorization code flow with PKCE (S256). What must survive the round trip through the
provider (``state``, ``nonce``, the PKCE verifier and where to return) travels in a short-lived,
signed, HTTP-only cookie bound to the browser that started the sign-in, so any worker process
can finish it and nothing is kept on the server. The ID token is checked here, not trusted:
signature against the provider's JWKS (fetched again once when a token names a key we do not
know, as after a key rotation), ``iss``, ``aud``/``azp``, ``exp`` and ``iat`` with a small
leeway, and the ``nonce`` from the cookie. Discovery and keys are cached for a bounded time.

Authlib speaks OAuth (the authorization URL, the PKCE challenge, the token request with
``client_secret_basic`` or ``private_key_jwt``) and validates the ID token's claims; joserfc,
Authlib's JOSE library, checks the signature.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx
import msgspec
from authlib.common.urls import add_params_to_uri
from authlib.integrations.base_client.errors import OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet, OctKey, RSAKey
from litestar import Request, Response

from guahao.config import Settings
from guahao.platform.clock import Clock
from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.oauth_client import AsyncOAuth2Client
from guahao.platform.services.federated_identities import (
    FederatedIdentity,
    national_mobile_number,
)

__all__ = [
    "FLOW_COOKIE",
    "ID_TOKEN_COOKIE",
    "CitizenSessions",
    "ClientRegistration",
    "ProviderMetadata",
    "RelyingParty",
    "SignInFlow",
    "VerifiedSignIn",
    "local_path",
]

log = logging.getLogger(__name__)

FLOW_COOKIE = "guahao_oidc_flow"
ID_TOKEN_COOKIE = "guahao_oidc_id_token"
COOKIE_PATH = "/auth/oidc"
"""Both cookies go back only to the sign-in routes, never with API or page requests."""

FLOW_SECONDS = 600
"""How long a started sign-in may take at the provider (login, consent, an SMS code)."""

LEEWAY_SECONDS = 60
"""Clock skew allowed between the provider and us on ``exp`` and ``iat``."""

METADATA_SECONDS = 3600
"""How long discovery and the JWKS are trusted before they are fetched again."""

KEY_REFRESH_GAP_SECONDS = 10
"""Tokens naming a key we do not know fetch the JWKS again at most this often: made-up key ids
must not turn every request into a request to the provider. (A rotation within this time after
such a fetch is seen at the next one or when the cache expires.)"""

_HTTP_TIMEOUT = httpx.Timeout(10.0)
_UNSIGNED_OR_SHARED = frozenset({"none", "HS256", "HS384", "HS512"})


@runtime_checkable
class CitizenSessions(Protocol):
    """Where a verified sign-in becomes a signed-in browser: the one seam to the page session.

    The app wiring chooses the implementation; this module never knows how a session is kept.
    """

    async def start(
        self, request: Request[Any, Any, Any], account_id: str, response: Response[Any]
    ) -> Response[Any]:
        """Sign ``account_id`` in on ``response`` (the redirect back into the site)."""
        ...

    async def end(self, request: Request[Any, Any, Any], response: Response[Any]) -> Response[Any]:
        """End the browser's session on ``response``."""
        ...


class ProviderMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """The part of ``/.well-known/openid-configuration`` a relying party uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    id_token_signing_alg_values_supported: list[str] = msgspec.field(
        default_factory=lambda: ["RS256"]
    )


class ClientRegistration(msgspec.Struct, frozen=True, kw_only=True):
    """This platform as registered at the provider (from the settings)."""

    issuer: str
    client_id: str
    client_secret: str = ""
    private_key_pem: str = ""
    scopes: str = "openid profile phone"
    redirect_uri: str
    post_logout_redirect_uri: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientRegistration | None:
        """The registration, or None when no issuer is set (sign-in through a provider off).

        Read once at start-up; a half-configured client is refused then, not at a citizen's
        first sign-in.
        """
        if not settings.oidc_issuer:
            return None
        if not settings.oidc_client_id:
            raise ValueError("GUAHAO_OIDC_ISSUER is set but GUAHAO_OIDC_CLIENT_ID is not")
        key = ""
        if settings.oidc_private_key_file:
            key = Path(settings.oidc_private_key_file).read_text()
        elif not settings.oidc_client_secret:
            raise ValueError(
                "GUAHAO_OIDC_ISSUER needs GUAHAO_OIDC_CLIENT_SECRET or GUAHAO_OIDC_PRIVATE_KEY_FILE"
            )
        scopes = settings.oidc_scopes.split()
        if "openid" not in scopes:
            scopes.insert(0, "openid")
        return cls(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            private_key_pem=key,
            scopes=" ".join(scopes),
            redirect_uri=settings.oidc_redirect_uri(),
            post_logout_redirect_uri=settings.oidc_post_logout_redirect_uri(),
        )


class SignInFlow(msgspec.Struct, frozen=True, kw_only=True):
    """One started sign-in, as carried by the flow cookie."""

    state: str
    nonce: str
    verifier: str
    next: str = "/"


class VerifiedSignIn(msgspec.Struct, frozen=True, kw_only=True):
    """A finished sign-in: who the provider vouched for, and the ID token (the logout hint)."""

    identity: FederatedIdentity
    id_token: str


def local_path(candidate: str | None) -> str:
    """Where to go after sign-in: a path on this site, never another site (open redirect).

    >>> local_path("/me/bookings?tab=2"), local_path("//evil.example/"), local_path(None)
    ('/me/bookings?tab=2', '/', '/')
    >>> local_path("https://evil.example/"), local_path("/\\\\evil.example")
    ('/', '/')
    """
    if not candidate or len(candidate) > 500 or not candidate.startswith("/"):
        return "/"
    if candidate.startswith("//") or "\\" in candidate or urlsplit(candidate).netloc:
        return "/"
    if any(ord(ch) < 0x20 for ch in candidate):
        return "/"
    return candidate


class RelyingParty:
    """Sign-in through one OpenID Connect provider, for every request of this process."""

    def __init__(
        self,
        registration: ClientRegistration,
        *,
        secret_key: bytes,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.registration = registration
        self._clock = clock
        # A key of its own, derived from the platform's secret: a flow cookie can never pass
        # as an access token or the other way round.
        self._flow_key = OctKey.import_key(
            hmac.new(secret_key, b"guahao oidc sign-in flow", hashlib.sha256).digest()
        )
        # Parsed once: loading an RSA private key checks it, which takes long enough to be
        # felt if every sign-in did it on the event loop.
        self._client_key: RSAKey | None = (
            RSAKey.import_key(registration.private_key_pem)
            if registration.private_key_pem
            else None
        )
        self._transport = transport or httpx.AsyncHTTPTransport(retries=1)
        self._http = httpx.AsyncClient(transport=self._transport, timeout=_HTTP_TIMEOUT)
        self._metadata_lock = asyncio.Lock()
        self._keys_lock = asyncio.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._forced_refresh_at = float("-inf")
        self.fetches = {"discovery": 0, "jwks": 0}
        """How often each document was fetched (operations: a cache that never hits shows)."""

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def secure_cookies(self) -> bool:
        return self.registration.redirect_uri.startswith("https://")

    def _now(self) -> float:
        return self._clock.now().timestamp()

    # ----------------------------------------------------------------- provider documents

    async def _get_json(self, url: str, what: str) -> Any:
        try:
            response = await self._http.get(url, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            log.warning("identity provider %s unreachable: %r", what, exc)
            refuse("OIDC_PROVIDER_UNAVAILABLE", document=what)
        if response.status_code != 200:
            refuse("OIDC_PROVIDER_UNAVAILABLE", document=what, status=response.status_code)
        try:
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            refuse("OIDC_PROVIDER_UNAVAILABLE", document=what, reason="not_json")

    async def metadata(self) -> ProviderMetadata:
        """Discovery, cached for ``METADATA_SECONDS``; a stale copy serves while the provider
        cannot be reached (its endpoints rarely move, its outages are what we ride out)."""
        cached = self._metadata
        if cached is not None and cached[0] > self._now():
            return cached[1]
        async with self._metadata_lock:  # one fetch for a crowd of sign-ins, not one each
            cached = self._metadata
            if cached is not None and cached[0] > self._now():
                return cached[1]
            try:
                found = await self._discover()
            except GuahaoError:
                if cached is None:
                    raise
                log.warning("identity provider discovery failed; serving the stale copy")
                return cached[1]
            self._metadata = (self._now() + METADATA_SECONDS, found)
            return found

    async def _discover(self) -> ProviderMetadata:
        issuer = self.registration.issuer
        raw = await self._get_json(
            f"{issuer.rstrip('/')}/.well-known/openid-configuration", "discovery"
        )
        self.fetches["discovery"] += 1
        try:
            found = msgspec.convert(raw, ProviderMetadata)
        except msgspec.ValidationError as exc:
            refuse("OIDC_PROVIDER_UNAVAILABLE", document="discovery", reason=str(exc)[:200])
        # OpenID Connect Discovery 1.0 §4.3: the issuer must be exactly the one configured.
        if found.issuer != issuer:
            log.error("discovery names issuer %r, configured %r", found.issuer, issuer)
            refuse("OIDC_PROVIDER_UNAVAILABLE", document="discovery", reason="issuer_mismatch")
        return found

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys, cached like discovery; ``refresh`` asks again (a token
        named a key we do not know), at most once per ``KEY_REFRESH_GAP_SECONDS``."""
        meta = await self.metadata()
        async with self._keys_lock:
            cached, now = self._keys, self._now()
            if cached is not None:
                if not refresh and cached[0] > now:
                    return cached[1]
                if refresh and now - self._forced_refresh_at < KEY_REFRESH_GAP_SECONDS:
                    return cached[1]
            raw = await self._get_json(meta.jwks_uri, "jwks")
            self.fetches["jwks"] += 1
            try:
                keys = KeySet.import_key_set(raw)
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                refuse("OIDC_PROVIDER_UNAVAILABLE", document="jwks", reason=str(exc)[:200])
            if refresh:
                self._forced_refresh_at = now
            self._keys = (now + METADATA_SECONDS, keys)
            return keys

    # ----------------------------------------------------------------------- the flow

    def _oauth(self, meta: ProviderMetadata) -> Any:
        """Authlib's client for one sign-in (it keeps the fetched token on itself, so it is
        never shared between requests); the connection pool underneath is shared."""
        reg = self.registration
        client = AsyncOAuth2Client(
            client_id=reg.client_id,
            client_secret=self._client_key or reg.client_secret,
            token_endpoint_auth_method=(
                "private_key_jwt" if self._client_key else "client_secret_basic"
            ),
            scope=reg.scopes,
            redirect_uri=reg.redirect_uri,
            code_challenge_method="S256",
            transport=self._transport,
            timeout=_HTTP_TIMEOUT,
        )
        if self._client_key is not None:
            client.register_client_auth_method(PrivateKeyJWT(meta.token_endpoint))
        return client

    async def begin(self, next_path: str | None) -> tuple[str, str]:
        """The provider's authorization URL and the flow cookie's value."""
        meta = await self.metadata()
        flow = SignInFlow(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            next=local_path(next_path),
        )
        url, _state = self._oauth(meta).create_authorization_url(
            meta.authorization_endpoint,
            state=flow.state,
            code_verifier=flow.verifier,
            nonce=flow.nonce,
        )
        return str(url), self._seal(flow)

    def _seal(self, flow: SignInFlow) -> str:
        now = int(self._now())
        claims = msgspec.structs.asdict(flow) | {"iat": now, "exp": now + FLOW_SECONDS}
        return jwt.encode({"alg": "HS256"}, claims, self._flow_key)

    def read_flow(self, cookie: str | None) -> SignInFlow:
        """The flow this browser started; refused when absent, altered or too old."""
        if not cookie:
            refuse("OIDC_STATE_INVALID", reason="no_flow_cookie")
        try:
            decoded = jwt.decode(cookie, self._flow_key, algorithms=["HS256"])
            jwt.JWTClaimsRegistry(now=int(self._now()), exp={"essential": True}).validate(
                decoded.claims
            )
            claims = {k: v for k, v in decoded.claims.items() if k not in ("iat", "exp")}
            return msgspec.convert(claims, SignInFlow)
        except ExpiredTokenError:
            refuse("OIDC_STATE_INVALID", reason="flow_expired")
        except (JoseError, ValueError, msgspec.ValidationError):
            refuse("OIDC_STATE_INVALID", reason="flow_cookie_invalid")

    async def finish(
        self, flow: SignInFlow, *, state: str | None, code: str | None, iss: str | None = None
    ) -> VerifiedSignIn:
        """Exchange the code of the callback and verify what the provider says."""
        if not state or not hmac.compare_digest(state.encode(), flow.state.encode()):
            refuse("OIDC_STATE_INVALID", reason="state_mismatch")
        meta = await self.metadata()
        # RFC 9207: a provider that names itself in the response must be ours (mix-up attack)
        if iss is not None and iss != meta.issuer:
            refuse("OIDC_STATE_INVALID", reason="issuer_mismatch")
        if not code:
            refuse("OIDC_SIGN_IN_DENIED", error="no_code")
        tokens = await self._exchange(meta, code, flow.verifier)
        raw_id_token = tokens.get("id_token")
        if not isinstance(raw_id_token, str):
            refuse("ID_TOKEN_INVALID", reason="no_id_token")
        access_token = tokens.get("access_token")
        claims = await self.verify_id_token(
            raw_id_token, nonce=flow.nonce, access_token=access_token or ""
        )
        phone_claims: dict[str, Any] = claims
        if "phone_number" not in claims and meta.userinfo_endpoint and access_token:
            phone_claims = await self._userinfo(meta, str(access_token), str(claims["sub"]))
        phone = ""
        raw_phone = phone_claims.get("phone_number")
        if isinstance(raw_phone, str) and phone_claims.get("phone_number_verified") is True:
            phone = national_mobile_number(raw_phone)
        name = phone_claims.get("name") or claims.get("name") or ""
        identity = FederatedIdentity(
            issuer=meta.issuer,
            subject=str(claims["sub"]),
            phone=phone,
            display_name=name if isinstance(name, str) else "",
        )
        return VerifiedSignIn(identity=identity, id_token=raw_id_token)

    async def _exchange(self, meta: ProviderMetadata, code: str, verifier: str) -> dict[str, Any]:
        oauth = self._oauth(meta)
        try:
            token: dict[str, Any] = await oauth.fetch_token(
                meta.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=verifier,
                redirect_uri=self.registration.redirect_uri,
            )
        except OAuthError as exc:
            refuse("OIDC_SIGN_IN_DENIED", error=str(exc.error)[:100])
        except httpx.HTTPError as exc:
            log.warning("identity provider token endpoint unreachable: %r", exc)
            refuse("OIDC_PROVIDER_UNAVAILABLE", document="token")
        except ValueError:
            refuse("OIDC_PROVIDER_UNAVAILABLE", document="token", reason="not_json")
        return dict(token)

    async def _userinfo(self, meta: ProviderMetadata, access_token: str, subject: str) -> Any:
        try:
            response = await self._http.get(
                meta.userinfo_endpoint,
                headers={"authorization": f"Bearer {access_token}", "accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            log.warning("identity provider userinfo unreachable: %r", exc)
            refuse("OIDC_PROVIDER_UNAVAILABLE", document="userinfo")
        if response.status_code != 200:
            refuse("OIDC_PROVIDER_UNAVAILABLE", document="userinfo", status=response.status_code)
        try:
            info = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            refuse("OIDC_PROVIDER_UNAVAILABLE", document="userinfo", reason="not_json")
        # OpenID Connect Core §5.3.2: userinfo about anyone else must not be used
        if not isinstance(info, dict) or info.get("sub") != subject:
            refuse("ID_TOKEN_INVALID", reason="userinfo_subject_mismatch")
        return info

    async def verify_id_token(
        self, raw: str, *, nonce: str, access_token: str = ""
    ) -> dict[str, Any]:
        """The claims of ``raw`` once signature, issuer, audience, times and nonce hold."""
        meta = await self.metadata()
        algorithms = [
            a for a in meta.id_token_signing_alg_values_supported if a not in _UNSIGNED_OR_SHARED
        ] or ["RS256"]
        keys = await self._key_set()
        try:
            try:
                token = jwt.decode(raw, keys, algorithms=algorithms)
            except InvalidKeyIdError:
                keys = await self._key_set(refresh=True)
                token = jwt.decode(raw, keys, algorithms=algorithms)
        except (JoseError, ValueError, TypeError) as exc:
            refuse("ID_TOKEN_INVALID", reason=type(exc).__name__)
        client_id = self.registration.client_id
        claims = CodeIDToken(
            token.claims,
            token.header,
            {
                "iss": {"essential": True, "value": meta.issuer},
                "aud": {"essential": True, "value": client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
            },
            {"nonce": nonce, "client_id": client_id, "access_token": access_token},
        )
        try:
            claims.validate(now=int(self._now()), leeway=LEEWAY_SECONDS)
        except ExpiredTokenError:
            refuse("ID_TOKEN_EXPIRED")
        except JoseError as exc:
            refuse(
                "ID_TOKEN_INVALID",
                reason=type(exc).__name__,
                claim=str(getattr(exc, "claim", "")),
            )
        if not nonce or claims.get("nonce") != nonce:  # Authlib skips an empty expected nonce
            refuse("ID_TOKEN_INVALID", reason="InvalidClaimError", claim="nonce")
        return dict(claims)

    async def logout_url(self, id_token_hint: str | None) -> str:
        """RP-initiated logout at the provider, or straight home if it offers none."""
        reg = self.registration
        try:
            meta = await self.metadata()
        except GuahaoError:
            # the local session is already gone; the provider's stays until it is reachable
            return reg.post_logout_redirect_uri
        if not meta.end_session_endpoint:
            return reg.post_logout_redirect_uri
        params = [
            ("client_id", reg.client_id),
            ("post_logout_redirect_uri", reg.post_logout_redirect_uri),
        ]
        if id_token_hint:
            params.insert(0, ("id_token_hint", id_token_hint))
        return str(add_params_to_uri(meta.end_session_endpoint, params))
