"""Citizen tokens: a verified token's account is remembered, never past its expiry, and a
token that failed a check is never taken for one that passed."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from guahao.platform.errors import GuahaoError
from guahao.web.auth import TokenIssuer

SECRET = "a-signing-secret-of-at-least-32-characters"


def _token(claims: dict[str, object]) -> str:
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(SECRET.encode()))


def _refused(issuer: TokenIssuer, token: str) -> bool:
    with pytest.raises(GuahaoError) as refusal:
        issuer.account_of(token)
    return refusal.value.code == "UNAUTHENTICATED"


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    issuer = TokenIssuer(SECRET, 5)
    expires = int(time.time()) + 1
    token = _token({"sub": "acct-1", "exp": expires, "scope": "citizen"})
    assert issuer.account_of(token) == "acct-1"
    assert issuer.account_of(token) == "acct-1"  # now from memory
    while int(time.time()) < expires:
        time.sleep(0.05)
    assert _refused(issuer, token)
    assert _refused(issuer, token)


def test_a_tampered_copy_of_a_remembered_token_is_refused() -> None:
    issuer = TokenIssuer(SECRET, 5)
    token = issuer.issue("acct-2")
    assert issuer.account_of(token) == "acct-2"
    head, payload, signature = token.split(".")
    forged = _token({"sub": "acct-3", "exp": int(time.time()) + 600, "scope": "citizen"})
    assert _refused(issuer, f"{head}.{forged.split('.')[1]}.{signature}")
    assert _refused(issuer, f"{head}.{payload}.{signature[:-2]}AA")


@pytest.mark.parametrize("scope", ["staff", None])
def test_a_token_of_another_kind_is_refused_every_time(scope: str | None) -> None:
    issuer = TokenIssuer(SECRET, 5)
    claims: dict[str, object] = {"sub": "acct-4", "exp": int(time.time()) + 600}
    if scope is not None:
        claims["scope"] = scope
    token = _token(claims)
    assert _refused(issuer, token)
    assert _refused(issuer, token)


def test_memory_is_bounded_and_forgets_the_oldest_first() -> None:
    issuer = TokenIssuer(SECRET, 5, kept=3)
    tokens = [issuer.issue(f"acct-{n}") for n in range(5)]
    for n, token in enumerate(tokens):
        assert issuer.account_of(token) == f"acct-{n}"
    assert list(issuer._verified) == tokens[2:]
    assert issuer.account_of(tokens[0]) == "acct-0"  # verified again, in full
    assert list(issuer._verified) == [*tokens[3:], tokens[0]]
