"""The signing scheme of payment notifications: what verifies, what is refused, and why."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guahao.platform.errors import ForbiddenError
from guahao.platform.payments.signatures import (
    FRESHNESS_WINDOW,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
    signing_string,
    verify,
)

SECRET = b"sandbox-secret-0123456789abcdef"
OTHER_SECRET = b"another-secret-0123456789abcdef"
SIGNED_AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BODY = b'{"notificationId":"n1","orderNo":"GH1","amountCents":2500}'
NONCE = "Zq3-nonce_42"


def headers_for(
    body: bytes = BODY, *, at: datetime = SIGNED_AT, secret: bytes = SECRET
) -> dict[str, str]:
    return signed_headers(secret, body, now=at, nonce=NONCE)


def refusal_code(headers: dict[str, str], body: bytes = BODY, *, now: datetime = SIGNED_AT) -> str:
    with pytest.raises(ForbiddenError) as refused:
        verify(SECRET, headers, body, now=now)
    return refused.value.code


def test_a_notification_signed_with_the_shared_secret_verifies() -> None:
    verify(SECRET, headers_for(), BODY, now=SIGNED_AT)


def test_a_notification_signed_with_another_secret_is_refused() -> None:
    assert refusal_code(headers_for(secret=OTHER_SECRET)) == "PAYMENT_SIGNATURE_INVALID"


def test_a_body_changed_after_signing_is_refused() -> None:
    tampered = BODY.replace(b"2500", b"2")
    assert refusal_code(headers_for(), tampered) == "PAYMENT_SIGNATURE_INVALID"


def test_a_timestamp_changed_after_signing_is_refused() -> None:
    headers = headers_for()
    headers[TIMESTAMP_HEADER] = str(int(headers[TIMESTAMP_HEADER]) + 1)
    assert refusal_code(headers) == "PAYMENT_SIGNATURE_INVALID"


def test_a_nonce_changed_after_signing_is_refused() -> None:
    headers = headers_for()
    headers[NONCE_HEADER] = "another-nonce"
    assert refusal_code(headers) == "PAYMENT_SIGNATURE_INVALID"


@pytest.mark.parametrize("missing", [TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER])
def test_a_notification_without_one_of_the_three_headers_is_refused(missing: str) -> None:
    headers = headers_for()
    del headers[missing]
    with pytest.raises(ForbiddenError) as refused:
        verify(SECRET, headers, BODY, now=SIGNED_AT)
    assert refused.value.code == "PAYMENT_SIGNATURE_INVALID"
    assert refused.value.detail == {"reason": "missing_header", "headers": [missing]}


def test_header_names_are_matched_whatever_their_case() -> None:
    headers = {name.lower(): value for name, value in headers_for().items()}
    verify(SECRET, headers, BODY, now=SIGNED_AT)
    headers = {name.upper(): value for name, value in headers_for().items()}
    verify(SECRET, headers, BODY, now=SIGNED_AT)


def test_one_header_given_twice_with_different_values_is_refused() -> None:
    headers = headers_for()
    headers[SIGNATURE_HEADER.lower()] = "0" * 64
    assert refusal_code(headers) == "PAYMENT_SIGNATURE_INVALID"


def test_unrelated_headers_are_ignored() -> None:
    headers = {**headers_for(), "Content-Type": "application/json", "content-type": "x"}
    verify(SECRET, headers, BODY, now=SIGNED_AT)


@pytest.mark.parametrize("timestamp", ["", "12a", "-5", "1.5", "１２３", "9" * 13])
def test_a_timestamp_that_is_not_plain_decimal_seconds_is_refused(timestamp: str) -> None:
    headers = headers_for()
    headers[TIMESTAMP_HEADER] = timestamp
    assert refusal_code(headers) == "PAYMENT_SIGNATURE_INVALID"


@pytest.mark.parametrize("nonce", ["", "short", "has space in it", "line\nbreak-nonce", "x" * 65])
def test_a_nonce_outside_the_allowed_alphabet_is_refused(nonce: str) -> None:
    headers = headers_for()
    headers[NONCE_HEADER] = nonce
    assert refusal_code(headers) == "PAYMENT_SIGNATURE_INVALID"


@pytest.mark.parametrize("signature", ["", "zz", "签名" * 32, "A" * 64])
def test_a_garbled_signature_is_refused_not_crashed_on(signature: str) -> None:
    headers = headers_for()
    headers[SIGNATURE_HEADER] = signature
    assert refusal_code(headers) == "PAYMENT_SIGNATURE_INVALID"


def test_the_signature_is_lowercase_hex_and_uppercase_is_not_accepted() -> None:
    headers = headers_for()
    assert headers[SIGNATURE_HEADER] == headers[SIGNATURE_HEADER].lower()
    headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER].upper()
    assert refusal_code(headers) == "PAYMENT_SIGNATURE_INVALID"


@pytest.mark.parametrize("skew", [FRESHNESS_WINDOW, -FRESHNESS_WINDOW, timedelta(0)])
def test_a_notification_verifies_up_to_five_minutes_either_side_of_now(skew: timedelta) -> None:
    verify(SECRET, headers_for(), BODY, now=SIGNED_AT + skew)


def test_a_notification_older_than_five_minutes_is_stale() -> None:
    late = SIGNED_AT + FRESHNESS_WINDOW + timedelta(seconds=1)
    with pytest.raises(ForbiddenError) as refused:
        verify(SECRET, headers_for(), BODY, now=late)
    assert refused.value.code == "PAYMENT_CALLBACK_STALE"
    assert refused.value.detail == {"skew_seconds": 301, "window_seconds": 300}


def test_a_notification_stamped_more_than_five_minutes_ahead_is_stale() -> None:
    early = SIGNED_AT - FRESHNESS_WINDOW - timedelta(seconds=1)
    assert refusal_code(headers_for(), now=early) == "PAYMENT_CALLBACK_STALE"


def test_a_forged_notification_is_reported_as_forged_even_when_also_stale() -> None:
    long_after = SIGNED_AT + timedelta(days=1)
    assert (
        refusal_code(headers_for(secret=OTHER_SECRET), now=long_after)
        == "PAYMENT_SIGNATURE_INVALID"
    )


def test_the_freshness_window_can_be_narrowed() -> None:
    with pytest.raises(ForbiddenError) as refused:
        verify(
            SECRET,
            headers_for(),
            BODY,
            now=SIGNED_AT + timedelta(seconds=31),
            window=timedelta(seconds=30),
        )
    assert refused.value.code == "PAYMENT_CALLBACK_STALE"


def test_signing_and_verifying_refuse_naive_datetimes() -> None:
    naive = datetime(2026, 3, 1, 8, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="aware"):
        signed_headers(SECRET, BODY, now=naive, nonce=NONCE)
    with pytest.raises(ValueError, match="aware"):
        verify(SECRET, headers_for(), BODY, now=naive)


def test_a_timestamp_is_whole_unix_seconds_in_any_time_zone() -> None:
    shanghai = SIGNED_AT.astimezone(ZoneInfo("Asia/Shanghai"))
    assert headers_for(at=shanghai) == headers_for(at=SIGNED_AT)
    assert headers_for()[TIMESTAMP_HEADER] == str(int(SIGNED_AT.timestamp()))


def test_the_signing_string_puts_scheme_timestamp_nonce_and_body_on_their_own_lines() -> None:
    assert signing_string(1, "nonce-123", b"x\ny") == (
        b"guahao-pay-hmac-sha256-v1\n1\nnonce-123\nx\ny\n"
    )


def test_the_signature_is_hmac_sha256_of_the_signing_string() -> None:
    expected = hmac.new(SECRET, signing_string(7, NONCE, BODY), hashlib.sha256).hexdigest()
    assert sign(SECRET, 7, NONCE, BODY) == expected


@given(body=st.binary(max_size=512), position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_flipping_any_bit_of_any_body_breaks_the_signature(
    body: bytes, position: int, bit: int
) -> None:
    headers = headers_for(body)
    verify(SECRET, headers, body, now=SIGNED_AT)
    if not body:
        tampered = b"\x00"
    else:
        index = position % len(body)
        tampered = body[:index] + bytes([body[index] ^ (1 << bit)]) + body[index + 1 :]
    with pytest.raises(ForbiddenError):
        verify(SECRET, headers, tampered, now=SIGNED_AT)
