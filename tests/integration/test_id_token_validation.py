"""The relying party checks every ID token against the real provider's discovery and JWKS.

The provider (``oidc-provider``) signs with a key this test session generated, so tokens can
be minted here exactly as it would sign them, and then spoiled one property at a time: each
spoiled token is refused with a stable code, and the untouched one passes (so the refusals
are the checks', not an accident of minting).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from guahao.platform.clock import ManualClock
from guahao.platform.errors import GuahaoError
from guahao.web.oidc import (
    FLOW_SECONDS,
    KEY_REFRESH_GAP_SECONDS,
    LEEWAY_SECONDS,
    METADATA_SECONDS,
    ClientRegistration,
    RelyingParty,
)
from tests.fixtures.identity_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    IdentityProvider,
    new_signing_key,
    start_identity_provider,
)

NONCE = "n-0123456789"
REDIRECT = "http://127.0.0.1:9/auth/oidc/callback"


def _registration(issuer: str) -> ClientRegistration:
    return ClientRegistration(
        issuer=issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT,
        post_logout_redirect_uri="http://127.0.0.1:9/",
    )


@pytest.fixture
async def provider(tmp_path: Path, provider_signing_key: RSAKey) -> AsyncIterator[IdentityProvider]:
    async with start_identity_provider(
        tmp_path,
        redirect_uris=[REDIRECT],
        post_logout_redirect_uris=["http://127.0.0.1:9/"],
        keys=[provider_signing_key],
    ) as running:
        yield running


@pytest.fixture
async def party(provider: IdentityProvider) -> AsyncIterator[RelyingParty]:
    relying_party = RelyingParty(
        _registration(provider.issuer),
        secret_key=b"s" * 32,
        clock=ManualClock(datetime.now(UTC)),
    )
    yield relying_party
    await relying_party.aclose()


def _claims(provider: IdentityProvider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "sub": "alice",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 120,
        "nonce": NONCE,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def _refusal(party: RelyingParty, token: str, nonce: str = NONCE) -> tuple[str, Any]:
    with pytest.raises(GuahaoError) as refused:
        await party.verify_id_token(token, nonce=nonce)
    return refused.value.code, refused.value.detail.get("claim", refused.value.detail)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_token_signed_as_the_provider_signs_is_accepted(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    claims = await party.verify_id_token(provider.mint(_claims(provider)), nonce=NONCE)
    assert claims["sub"] == "alice"
    assert claims["iss"] == provider.issuer


async def test_an_expired_token_is_refused_beyond_the_leeway_only(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    now = int(time.time())
    within = provider.mint(_claims(provider, iat=now - 600, exp=now - LEEWAY_SECONDS // 2))
    assert (await party.verify_id_token(within, nonce=NONCE))["sub"] == "alice"
    expired = provider.mint(_claims(provider, iat=now - 600, exp=now - LEEWAY_SECONDS - 5))
    assert (await _refusal(party, expired))[0] == "ID_TOKEN_EXPIRED"


async def test_a_token_issued_in_the_future_is_refused(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    now = int(time.time())
    future = provider.mint(_claims(provider, iat=now + LEEWAY_SECONDS + 60, exp=now + 600))
    assert await _refusal(party, future) == ("ID_TOKEN_INVALID", "iat")


async def test_an_altered_signature_is_refused(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    header, payload, signature = provider.mint(_claims(provider)).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    code, _ = await _refusal(party, f"{header}.{payload}.{_b64(bytes(raw))}")
    assert code == "ID_TOKEN_INVALID"


async def test_an_altered_payload_under_the_original_signature_is_refused(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    header, _payload, signature = provider.mint(_claims(provider)).split(".")
    body = _b64(
        b'{"iss":"%s","sub":"mallory","aud":"%s","iat":%d,"exp":%d,"nonce":"%s"}'
        % (
            provider.issuer.encode(),
            CLIENT_ID.encode(),
            int(time.time()),
            int(time.time()) + 120,
            NONCE.encode(),
        )
    )
    code, _ = await _refusal(party, f"{header}.{body}.{signature}")
    assert code == "ID_TOKEN_INVALID"


async def test_a_token_signed_by_another_key_under_the_providers_key_id_is_refused(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    impostor = new_signing_key(provider.signing_key.kid or "")
    code, _ = await _refusal(party, provider.mint(_claims(provider), key=impostor))
    assert code == "ID_TOKEN_INVALID"


async def test_unsigned_and_shared_secret_tokens_are_refused(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    claims = _claims(provider)
    header = _b64(b'{"alg":"none"}')
    payload = jwt.encode({"alg": "HS256"}, claims, OctKey.generate_key(256)).split(".")[1]
    assert (await _refusal(party, f"{header}.{payload}."))[0] == "ID_TOKEN_INVALID"
    # HS256 keyed with the provider's public key, the classic algorithm confusion (made by
    # hand: joserfc itself refuses to use a public key as a shared secret)
    public_pem = provider.signing_key.as_pem(private=False)
    hs256 = _b64(b'{"alg":"HS256"}')
    signing_input = f"{hs256}.{payload}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{_b64(mac)}"
    assert (await _refusal(party, confused))[0] == "ID_TOKEN_INVALID"


@pytest.mark.parametrize(
    ("changes", "claim"),
    [
        ({"aud": "another-client"}, "aud"),
        ({"aud": ["another-client", "third-client"]}, "aud"),
        ({"iss": "http://127.0.0.1:1"}, "iss"),
        ({"nonce": "someone-elses-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"sub": None}, "sub"),
        ({"aud": [CLIENT_ID, "another-client"], "azp": "another-client"}, "azp"),
    ],
    ids=[
        "wrong-audience",
        "audiences-without-us",
        "wrong-issuer",
        "wrong-nonce",
        "no-nonce",
        "no-subject",
        "authorized-party-not-us",
    ],
)
async def test_a_token_not_meant_for_this_sign_in_is_refused(
    party: RelyingParty, provider: IdentityProvider, changes: dict[str, Any], claim: str
) -> None:
    code, refused_claim = await _refusal(party, provider.mint(_claims(provider, **changes)))
    assert code == "ID_TOKEN_INVALID"
    assert claim in str(refused_claim)


async def test_an_unknown_key_id_asks_the_provider_once_and_not_again_at_once(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    await party.verify_id_token(provider.mint(_claims(provider)), nonce=NONCE)
    assert party.fetches == {"discovery": 1, "jwks": 1}

    stranger = new_signing_key("not-served")
    assert (await _refusal(party, provider.mint(_claims(provider), key=stranger)))[0] == (
        "ID_TOKEN_INVALID"
    )
    assert party.fetches["jwks"] == 2  # asked again, once
    await _refusal(party, provider.mint(_claims(provider), key=stranger))
    assert party.fetches["jwks"] == 2  # not within the gap: made-up kids cost the provider nothing

    clock = party._clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds=KEY_REFRESH_GAP_SECONDS + 1)
    await _refusal(party, provider.mint(_claims(provider), key=stranger))
    assert party.fetches["jwks"] == 3


async def test_a_rotated_key_is_picked_up_on_the_first_token_it_signed(
    tmp_path: Path, provider_signing_key: RSAKey
) -> None:
    def start(keys: list[RSAKey], port: int = 0) -> Any:
        return start_identity_provider(
            tmp_path,
            redirect_uris=[REDIRECT],
            post_logout_redirect_uris=["http://127.0.0.1:9/"],
            keys=keys,
            port=port,
        )

    async with start([provider_signing_key]) as before:
        party = RelyingParty(
            _registration(before.issuer),
            secret_key=b"s" * 32,
            clock=ManualClock(datetime.now(UTC)),
        )
        await party.verify_id_token(before.mint(_claims(before)), nonce=NONCE)
    try:
        # the provider restarts at the same address, signing with a new key
        rotated = new_signing_key("provider-key-2")
        async with start([rotated, provider_signing_key], port=before.port) as after:
            assert after.issuer == before.issuer
            claims = await party.verify_id_token(after.mint(_claims(after)), nonce=NONCE)
            assert claims["sub"] == "alice"
            # and tokens of the old key still pass until it leaves the JWKS
            await party.verify_id_token(
                after.mint(_claims(after), key=provider_signing_key), nonce=NONCE
            )
        assert party.fetches == {"discovery": 1, "jwks": 2}
    finally:
        await party.aclose()


async def test_discovery_and_keys_are_cached_for_a_bounded_time(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    for _ in range(3):
        await party.verify_id_token(provider.mint(_claims(provider)), nonce=NONCE)
    assert party.fetches == {"discovery": 1, "jwks": 1}
    clock = party._clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds=METADATA_SECONDS + 1)
    now = int(clock.now().timestamp())
    later = provider.mint(_claims(provider, iat=now, exp=now + 60))
    await party.verify_id_token(later, nonce=NONCE)
    assert party.fetches == {"discovery": 2, "jwks": 2}


async def test_a_provider_naming_another_issuer_is_not_trusted(
    provider: IdentityProvider,
) -> None:
    # Discovery §4.3: the issuer in the document must be exactly the configured one
    party = RelyingParty(
        _registration(provider.issuer + "/"),
        secret_key=b"s" * 32,
        clock=ManualClock(datetime.now(UTC)),
    )
    try:
        with pytest.raises(GuahaoError) as refused:
            await party.begin("/")
        assert refused.value.code == "OIDC_PROVIDER_UNAVAILABLE"
        assert refused.value.detail["reason"] == "issuer_mismatch"
    finally:
        await party.aclose()


async def test_an_unreachable_provider_is_unavailable_not_an_error() -> None:
    party = RelyingParty(
        _registration("http://127.0.0.1:9"),  # discard port: nothing listens
        secret_key=b"s" * 32,
        clock=ManualClock(datetime.now(UTC)),
    )
    try:
        with pytest.raises(GuahaoError) as refused:
            await party.begin("/")
        assert refused.value.code == "OIDC_PROVIDER_UNAVAILABLE"
    finally:
        await party.aclose()


async def test_the_flow_cookie_is_refused_altered_or_late(party: RelyingParty) -> None:
    _url, cookie = await party.begin("/me")
    assert party.read_flow(cookie).next == "/me"

    header, payload, signature = cookie.split(".")
    with pytest.raises(GuahaoError) as altered:
        party.read_flow(f"{header}.{payload}x.{signature}")
    assert altered.value.code == "OIDC_STATE_INVALID"

    clock = party._clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds=FLOW_SECONDS + 1)
    with pytest.raises(GuahaoError) as late:
        party.read_flow(cookie)
    assert (late.value.code, late.value.detail["reason"]) == ("OIDC_STATE_INVALID", "flow_expired")


async def test_the_logout_url_carries_the_hint_and_the_registered_return(
    party: RelyingParty, provider: IdentityProvider
) -> None:
    url = httpx.URL(await party.logout_url("the-id-token"))
    assert str(url).startswith(f"{provider.issuer}/session/end?")
    assert url.params["id_token_hint"] == "the-id-token"
    assert url.params["post_logout_redirect_uri"] == "http://127.0.0.1:9/"
    assert url.params["client_id"] == CLIENT_ID
