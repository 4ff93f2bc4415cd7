"""Registration answers the same whether or not a phone has an account (issue 14): a new phone
gets a code that completes the registration, a registered one a message that someone tried;
nobody learns from the answer which phones are customers."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from sqlalchemy import func, select

from guahao.bootstrap import Platform
from guahao.platform.errors import GuahaoError
from guahao.platform.persistence.tables import AccountRow
from guahao.platform.services.accounts import AccountService
from guahao.platform.services.registrations import (
    ALREADY_REGISTERED_TEMPLATE,
    TEMPLATE,
    RegistrationCodes,
)

KNOWN = "13800138000"
NEW = "13900139000"


class Phones:
    """A notifier that keeps the text messages it was asked to send (the embedded kind of
    adapter a demo uses, not an imitation of a service the test depends on)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Mapping[str, str]]] = []

    async def notify(self, *, account_id: str, template: str, params: Mapping[str, str]) -> None:
        self.sent.append((account_id, template, params))

    def code_to(self, phone: str) -> str:
        _account, _template, params = next(m for m in reversed(self.sent) if m[2]["phone"] == phone)
        found = re.search(r"(\d{6})", params["en"])
        assert found
        return found.group(1)


@pytest.fixture
def phones() -> Phones:
    return Phones()


@pytest.fixture
def accounts(platform: Platform, phones: Phones) -> AccountService:
    return AccountService(
        platform.ports,
        platform.rules,
        registrations=RegistrationCodes(platform.ports, platform.redis, phones, platform.rules),
    )


async def refused(code: str, awaitable: object) -> None:
    with pytest.raises(GuahaoError) as caught:
        await awaitable  # type: ignore[misc]
    assert caught.value.code == code, caught.value


async def account_count(platform: Platform) -> int:
    async with platform.ports.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AccountRow)) or 0)


async def test_the_answer_is_the_same_whether_or_not_the_phone_has_an_account(
    platform: Platform, accounts: AccountService, phones: Phones
) -> None:
    owner = await accounts.register(phone=KNOWN, password="owners-password")
    known = await accounts.request_registration(phone=KNOWN, password="another-password")
    new = await accounts.request_registration(phone=NEW, password="another-password")
    assert (known, new) == ("138****8000", "139****9000")
    # the registered phone is told someone tried, with no code; the new one gets its code
    (to_owner, told, params), (_, coded, _) = phones.sent
    assert (to_owner, told) == (owner, ALREADY_REGISTERED_TEMPLATE)
    assert not re.search(r"\d{6}", params["en"])
    assert coded == TEMPLATE
    # no code makes a second account of the registered phone, nor changes its password
    await refused("SIGN_IN_CODE_INVALID", accounts.confirm_registration(phone=KNOWN, code="123456"))
    assert await account_count(platform) == 1
    assert await platform.accounts.authenticate(phone=KNOWN, password="owners-password") == owner


async def test_the_code_sent_to_a_new_phone_completes_the_registration_once(
    platform: Platform, accounts: AccountService, phones: Phones
) -> None:
    await accounts.request_registration(phone=NEW, password="chosen-password", display_name="新")
    code = phones.code_to(NEW)
    wrong = "000000" if code != "000000" else "111111"
    await refused("SIGN_IN_CODE_INVALID", accounts.confirm_registration(phone=NEW, code=wrong))
    assert await account_count(platform) == 0
    account_id = await accounts.confirm_registration(phone=NEW, code=code)
    await refused("SIGN_IN_CODE_INVALID", accounts.confirm_registration(phone=NEW, code=code))
    assert await platform.accounts.authenticate(phone=NEW, password="chosen-password") == account_id
    async with platform.ports.sessions() as session:
        row = await session.get(AccountRow, account_id)
        assert row is not None
        assert row.display_name == "新"
