"""Identities at the region's OpenID Connect provider, linked to platform accounts.

A person who signs in through the provider is known by (issuer, subject): the provider never
gives that pair to anyone else, whereas phone numbers are recycled by carriers. The first
sign-in links the pair to an account: the account already registered with the same
*verified* mobile number (so a citizen who registered by phone keeps their patients and
bookings), or a new account for that number. An unverified number links nothing: trusting it
would hand an existing account to whoever typed its number at the provider.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.platform.error_codes import refuse
from guahao.platform.errors import GuahaoError
from guahao.platform.ids import new_id
from guahao.platform.persistence.tables import FederatedIdentityRow
from guahao.platform.phone_numbers import normalise_phone
from guahao.platform.services.accounts import account_id_by_phone, add_account_without_password
from guahao.platform.services.runtime import Ports

__all__ = [
    "FederatedIdentities",
    "FederatedIdentity",
    "LinkedAccount",
    "national_mobile_number",
]


def national_mobile_number(claim: str) -> str:
    """The mainland mobile number in a ``phone_number`` claim, as 11 ASCII digits, or "".

    OpenID Connect recommends E.164 (``+86 138 0013 8000``); providers also send the national
    form, full-width digits or separators. They are read as everywhere else on the platform
    (``normalise_phone``); any other number is not a platform account's phone, so it gives "".

    >>> national_mobile_number("+86 138-0013-8000")
    '13800138000'
    >>> national_mobile_number("１３８００１３８０００")
    '13800138000'
    >>> national_mobile_number("008613800138000"), national_mobile_number("+1 650 555 0100")
    ('13800138000', '')
    """
    try:
        return normalise_phone(claim)
    except GuahaoError:
        return ""


class FederatedIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """Who the provider vouched for, as read from a validated ID token (and userinfo)."""

    issuer: str
    subject: str
    phone: str = ""
    """The national mobile number, only if the provider marked it verified; else ""."""
    display_name: str = ""


class LinkedAccount(msgspec.Struct, frozen=True, kw_only=True):
    """The account a federated sign-in resolved to, and what that sign-in did."""

    account_id: str
    linked_now: bool
    """The (issuer, subject) pair was linked by this sign-in (its first)."""
    account_created: bool
    """No account had the verified number: this sign-in made one."""


class FederatedIdentities:
    """Find or link the account of a person signing in through the identity provider."""

    def __init__(self, ports: Ports) -> None:
        self._p = ports

    async def sign_in(self, identity: FederatedIdentity) -> LinkedAccount:
        """The account for ``identity``, linking it (and making the account) at first sign-in.

        Two first sign-ins of one person at the same moment (two tabs) race on the unique
        (issuer, subject) and phone constraints; the loser's transaction writes nothing and
        its second pass finds the winner's link.
        """
        try:
            return await self._sign_in_once(identity)
        except IntegrityError:
            pass
        try:
            return await self._sign_in_once(identity)
        except IntegrityError:
            refuse("REQUEST_IN_PROGRESS")

    async def _sign_in_once(self, identity: FederatedIdentity) -> LinkedAccount:
        now = self._p.clock.now()
        async with self._p.sessions() as session, session.begin():
            link = await session.scalar(
                select(FederatedIdentityRow).where(
                    FederatedIdentityRow.issuer == identity.issuer,
                    FederatedIdentityRow.subject == identity.subject,
                )
            )
            if link is not None:
                link.last_sign_in_at = now
                return LinkedAccount(
                    account_id=link.account_id, linked_now=False, account_created=False
                )
            if not identity.phone:
                refuse("OIDC_PHONE_REQUIRED", issuer=identity.issuer)
            account_id, created = await self._account_for_phone(session, identity)
            session.add(
                FederatedIdentityRow(
                    id=new_id(),
                    issuer=identity.issuer,
                    subject=identity.subject,
                    account_id=account_id,
                    linked_at=now,
                    last_sign_in_at=now,
                )
            )
            await session.flush()
        return LinkedAccount(account_id=account_id, linked_now=True, account_created=created)

    async def _account_for_phone(
        self, session: AsyncSession, identity: FederatedIdentity
    ) -> tuple[str, bool]:
        existing = await account_id_by_phone(session, self._p.vault, identity.phone)
        if existing is not None:
            return existing, False
        account_id = add_account_without_password(
            session, self._p.vault, identity.phone, self._p.clock.now(), identity.display_name
        )
        await session.flush()
        return account_id, True

    async def links_of(self, account_id: str) -> list[tuple[str, str]]:
        """The (issuer, subject) pairs linked to ``account_id``, oldest first."""
        async with self._p.sessions() as session:
            rows = (
                await session.execute(
                    select(FederatedIdentityRow.issuer, FederatedIdentityRow.subject)
                    .where(FederatedIdentityRow.account_id == account_id)
                    .order_by(FederatedIdentityRow.linked_at, FederatedIdentityRow.id)
                )
            ).all()
        return [(issuer, subject) for issuer, subject in rows]
