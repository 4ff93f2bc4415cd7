"""Citizen tokens verified without joserfc's decoder still pass only what joserfc passes:
a good token, and none expired, of another scope, signed with another key or another
algorithm, tampered with anywhere, or carrying a claim of the wrong type."""

from __future__ import annotations

import base64
import gc
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from guahao.platform.clock import ManualClock, SystemClock
from guahao.platform.errors import GuahaoError
from guahao.platform.shared_clock import SharedClock
from guahao.web.auth import HEADERS_KEPT, TokenIssuer

SECRET = "a-signing-secret-of-at-least-32-characters"


def _signed(claims: dict[str, object], *, key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode({"alg": alg}, claims, OctKey.import_key(key.encode()))


def _in_ten_minutes(now: int) -> int:
    """A claim's value taken when the token is made, not when the tests are collected (the
    whole suite runs longer than ten minutes)."""
    return now + 600


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "acct-1", "iat": now, "exp": now + 600, "scope": "citizen"}
    claims.update({k: v(now) if callable(v) else v for k, v in changes.items()})
    return {k: v for k, v in claims.items() if v is not None}


def _refused(token: str) -> bool:
    issuer = TokenIssuer(SECRET, 5)
    with pytest.raises(GuahaoError) as refusal:
        issuer.account_of(token)
    return refusal.value.code == "UNAUTHENTICATED" and not issuer._verified


def _part(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_joserfc_signed_names_its_account() -> None:
    assert TokenIssuer(SECRET, 5).account_of(_signed(_claims())) == "acct-1"


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": int(time.time()) - 1},
        {"exp": None},
        {"exp": "9999999999"},
        {"sub": None},
        {"sub": 42},
        {"scope": "staff"},
        {"scope": None},
        {"nbf": _in_ten_minutes},
        {"iat": _in_ten_minutes},
        {"iss": 7},
        {"aud": 7},
    ],
    ids=[
        "expired",
        "no-exp",
        "exp-a-string",
        "no-sub",
        "sub-a-number",
        "staff-scope",
        "no-scope",
        "not-yet-valid",
        "issued-in-the-future",
        "iss-a-number",
        "aud-a-number",
    ],
)
def test_a_token_whose_claims_joserfc_would_refuse_is_refused(changes: dict[str, object]) -> None:
    assert _refused(_signed(_claims(**changes)))


def test_a_token_signed_with_another_key_is_refused() -> None:
    assert _refused(_signed(_claims(), key="another-secret-of-at-least-32-characters!"))


def _hs256(head: str, payload: str) -> str:
    """A token whose header says anything, signed as HS256 with the right key: only the
    header check can refuse it."""
    mac = hmac.digest(SECRET.encode(), f"{head}.{payload}".encode(), "sha256")
    return f"{head}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.parametrize("alg", ["HS512", "none", "hs256"])
def test_a_header_naming_another_algorithm_is_refused_even_with_a_good_mac(alg: str) -> None:
    assert _refused(_hs256(_part({"alg": alg, "typ": "JWT"}), _part(_claims())))
    assert TokenIssuer(SECRET, 5).account_of(  # the same, naming HS256, passes
        _hs256(_part({"alg": "HS256", "typ": "JWT"}), _part(_claims()))
    )


def test_a_header_is_judged_by_its_own_text_after_another_passed() -> None:
    """The header every token shares is checked once per process: a worker that has passed
    it still refuses another header, every time it is sent, and remembers only what passed."""
    issuer = TokenIssuer(SECRET, 5)
    assert issuer.account_of(issuer.issue("acct-1")) == "acct-1"
    forged = _hs256(_part({"alg": "HS512", "typ": "JWT"}), _part(_claims()))
    for _ in range(2):
        with pytest.raises(GuahaoError):
            issuer.account_of(forged)
    assert len(issuer._headers) == 1


def test_the_headers_remembered_are_bounded_and_the_others_still_checked() -> None:
    issuer = TokenIssuer(SECRET, 5)
    for n in range(HEADERS_KEPT * 3):
        token = _hs256(_part({"alg": "HS256", "typ": f"JWT-{n}"}), _part(_claims()))
        assert issuer.account_of(token) == "acct-1"
    assert len(issuer._headers) == HEADERS_KEPT
    assert _refused_by(issuer, _hs256(_part({"alg": "none", "typ": "JWT"}), _part(_claims())))


def _refused_by(issuer: TokenIssuer, token: str) -> bool:
    with pytest.raises(GuahaoError) as refusal:
        issuer.account_of(token)
    return refusal.value.code == "UNAUTHENTICATED"


def test_an_unsigned_token_is_refused() -> None:
    head = _part({"alg": "none", "typ": "JWT"})
    assert _refused(f"{head}.{_part(_claims())}.")


def test_a_header_with_a_field_no_token_carries_is_refused() -> None:
    assert _refused(_hs256(_part({"alg": "HS256", "crit": ["exp"]}), _part(_claims())))
    assert _refused(_hs256(_part({"alg": "HS256", "kid": "k1"}), _part(_claims())))


def test_claims_that_are_not_json_are_refused_even_with_a_good_mac() -> None:
    head = _part({"alg": "HS256", "typ": "JWT"})
    garbage = base64.urlsafe_b64encode(b"not json").rstrip(b"=").decode()
    assert _refused(_hs256(head, garbage))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, p, s: f"{h}.{_part(_claims(sub='acct-2'))}.{s}",  # another account
        lambda h, p, s: f"{h}.{p}.{s[:-1]}{'B' if s[-1] != 'B' else 'C'}",  # signature changed
        lambda h, p, s: f"{h}.{p}.{s}=",  # padding the signature
        lambda h, p, s: f"{h}.{p}.{s[:10]}!{s[10:]}",  # a stray character in it
        lambda h, p, s: f"{h}.{p}",  # no signature part
        lambda h, p, s: f"{h}.{p}.{s}.{s}",  # four parts
        lambda h, p, s: f" {h}.{p}.{s}",  # a space in front of the header
        lambda h, p, s: f"{h}.{p}é.{s}",  # not ASCII
    ],
    ids=[
        "payload",
        "signature",
        "padded",
        "stray-char",
        "two-parts",
        "four-parts",
        "space",
        "non-ascii",
    ],
)
def test_a_tampered_token_is_refused(tamper: object) -> None:
    head, payload, signature = TokenIssuer(SECRET, 5).issue("acct-1").split(".")
    assert callable(tamper)
    assert _refused(tamper(head, payload, signature))


class _Reference:
    """The region's reference time (Redis ``TIME`` in production), ``ahead`` of this host."""

    def __init__(self, ahead: timedelta) -> None:
        self._ahead = ahead

    async def now(self) -> datetime:
        return datetime.now(UTC) + self._ahead


async def _worker(reference: _Reference | None) -> TokenIssuer:
    issuer = TokenIssuer(SECRET, 5)
    if reference is not None:
        clock = SharedClock(SystemClock(), reference)
        await clock.calibrate()
        issuer.keep_time_with(clock)
    return issuer


async def test_a_token_from_a_worker_on_the_regions_time_passes_a_worker_with_a_slow_host() -> None:
    """This host is five minutes behind the region's time: a worker keeping the region's time
    issues tokens a worker on its own slow clock would refuse as issued in the future."""
    reference = _Reference(timedelta(minutes=5))
    fast, slow = await _worker(reference), await _worker(reference)
    token = fast.issue("acct-1")
    assert slow.account_of(token) == "acct-1"
    with pytest.raises(GuahaoError):
        (await _worker(None)).account_of(token)  # the host's own clock: "issued in the future"


def test_a_test_clock_is_not_followed() -> None:
    issuer = TokenIssuer(SECRET, 5)
    issuer.keep_time_with(ManualClock(datetime(2030, 1, 1, tzinfo=UTC)))
    assert issuer.account_of(issuer.issue("acct-1")) == "acct-1"


def test_a_crowds_new_tokens_leave_nothing_a_young_collection_walks() -> None:
    """A verified token is remembered as strings and a number. As an (account, expiry) tuple
    each, a release crowd's new tokens stayed tracked until the next young collection, and
    the frees of older objects kept that collection from coming while they piled up (one
    young collection then walked tens of thousands: the paced crowd's tail). On the previous
    code this counted 2 002."""
    issuer = TokenIssuer(SECRET, 5)
    tokens = [issuer.issue(f"acct-{n}") for n in range(2_000)]
    gc.collect()
    gc.disable()  # nothing untracked meanwhile: what is tracked is what a collection walks
    try:
        before = len(gc.get_objects())
        accounts = [issuer.account_of(token) for token in tokens]
        grown = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert accounts[-1] == "acct-1999"
    assert grown < 200


def test_the_oldest_verified_token_is_forgotten_first_and_verified_again() -> None:
    issuer = TokenIssuer(SECRET, 5, kept=2)
    first, second, third = (issuer.issue(f"acct-{n}") for n in range(3))
    assert [issuer.account_of(t) for t in (first, second, third)] == ["acct-0", "acct-1", "acct-2"]
    assert list(issuer._verified) == [second, third]
    assert issuer.account_of(first) == "acct-0"  # verified again, from its signature
    assert list(issuer._verified) == [third, first]


def test_a_full_memory_of_tokens_forgets_its_oldest_eighth_at_once() -> None:
    """Not one key a new token: the slots of the keys taken from a dictionary's front stay
    until it is resized, and finding the oldest walked past all of them each time."""
    issuer = TokenIssuer(SECRET, 5, kept=16)
    tokens = [issuer.issue(f"acct-{n}") for n in range(17)]
    for token in tokens:
        issuer.account_of(token)
    assert list(issuer._verified) == tokens[2:]
    assert list(issuer._expiries) == tokens[2:]
