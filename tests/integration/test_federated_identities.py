"""Linking identities at the region's identity provider to accounts, on both databases."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import AccountRow, FederatedIdentityRow
from guahao.platform.services.federated_identities import (
    FederatedIdentity,
    national_mobile_number,
)

ISSUER = "https://id.region.example"


def _alice(**changes: str) -> FederatedIdentity:
    fields = {"issuer": ISSUER, "subject": "alice", "phone": "13800138000", "display_name": "李丽"}
    return FederatedIdentity(**(fields | changes))


async def _counts(platform: Platform) -> tuple[int, int]:
    async with platform.ports.sessions() as session:
        accounts = await session.scalar(select(func.count()).select_from(AccountRow))
        links = await session.scalar(select(func.count()).select_from(FederatedIdentityRow))
    return int(accounts or 0), int(links or 0)


async def test_first_sign_in_makes_an_account_that_no_password_opens(platform: Platform) -> None:
    linked = await platform.federated_identities.sign_in(_alice())
    assert linked.linked_now
    assert linked.account_created
    assert await platform.federated_identities.links_of(linked.account_id) == [(ISSUER, "alice")]
    for password in ("", "!federated", "anything-at-all"):
        with pytest.raises(GuahaoError) as refused:
            await platform.accounts.authenticate(phone="13800138000", password=password)
        assert refused.value.code == "CREDENTIALS_INVALID"
    # the phone is the account's: registering it again is refused
    with pytest.raises(GuahaoError) as taken:
        await platform.accounts.register(phone="13800138000", password="correct-horse-9")
    assert taken.value.code == "ACCOUNT_EXISTS"


async def test_later_sign_ins_find_the_account_by_subject_even_after_the_phone_changed(
    platform: Platform,
) -> None:
    first = await platform.federated_identities.sign_in(_alice())
    again = await platform.federated_identities.sign_in(_alice(phone="13900000000"))
    assert again.account_id == first.account_id
    assert not again.linked_now
    assert not again.account_created
    assert await _counts(platform) == (1, 1)


async def test_the_same_subject_at_another_issuer_is_another_identity(
    platform: Platform,
) -> None:
    first = await platform.federated_identities.sign_in(_alice())
    other = await platform.federated_identities.sign_in(
        _alice(issuer="https://id.elsewhere.example", phone="13700137000")
    )
    assert other.account_id != first.account_id
    assert await _counts(platform) == (2, 2)


async def test_a_registered_phone_links_the_identity_to_that_account(platform: Platform) -> None:
    account_id = await platform.accounts.register(phone="13800138000", password="correct-horse-9")
    linked = await platform.federated_identities.sign_in(_alice())
    assert linked.account_id == account_id
    assert linked.linked_now
    assert not linked.account_created
    # the password still opens it
    assert (
        await platform.accounts.authenticate(phone="13800138000", password="correct-horse-9")
        == account_id
    )


async def test_without_a_verified_phone_nothing_is_written(platform: Platform) -> None:
    with pytest.raises(GuahaoError) as refused:
        await platform.federated_identities.sign_in(_alice(phone=""))
    assert refused.value.code == "OIDC_PHONE_REQUIRED"
    assert await _counts(platform) == (0, 0)


async def test_two_first_sign_ins_at_once_agree_on_one_account(platform: Platform) -> None:
    results = await asyncio.gather(
        *(platform.federated_identities.sign_in(_alice()) for _ in range(4))
    )
    assert len({r.account_id for r in results}) == 1
    assert sum(r.account_created for r in results) == 1
    assert await _counts(platform) == (1, 1)


@pytest.mark.parametrize(
    ("claim", "number"),
    [
        ("+86 138 0013 8000", "13800138000"),
        ("+86-138-0013-8000", "13800138000"),
        ("0086 13800138000", "13800138000"),
        ("13800138000", "13800138000"),
        ("＋８６ １３８００１３８０００", "13800138000"),  # full-width
        # digits of other scripts are refused, as everywhere on the platform (normalise_phone)
        ("١٣٨٠٠١٣٨٠٠٠", ""),
        ("(138) 0013.8000", "13800138000"),
        ("+852 9123 4567", ""),  # Hong Kong: not a mainland mobile
        ("+86 10 6512 3456", ""),  # a Beijing landline
        ("12800138000", ""),
        ("", ""),
    ],
)
def test_phone_claims_are_read_as_ascii_mainland_mobile_numbers(claim: str, number: str) -> None:
    assert national_mobile_number(claim) == number
