"""Sign-in by a one-time SMS code (短信验证码登录), the citizen pages' way in.

A code is six random digits, sent through the ``Notifier`` port and stored only as a keyed
hash in Redis with its expiry; it works once. Sending is rate limited per phone and per
address. Wrong codes do not lock the phone out, because whoever guesses is rarely the owner:
after a few failures each further attempt must wait a little longer (progressive delay, capped
at a minute), so guessing a million codes is hopeless while the real owner, holding the right
code, is never refused for more than a minute. A code also dies after a few wrong tries, and
attempts per address are limited, so one address cannot guess across many phones.

The first successful sign-in of a phone creates its account: owning the phone is the proof.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import redis.asyncio as aioredis
from sqlalchemy.exc import IntegrityError

from guahao.platform.client_context import ClientContext
from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.personal_data import mask_phone
from guahao.platform.phone_numbers import normalise_phone
from guahao.platform.ports import Notifier
from guahao.platform.services.accounts import account_id_by_phone, add_account_without_password
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports

__all__ = [
    "CODE_LIFETIME",
    "FREE_FAILURES",
    "MAX_DELAY_SECONDS",
    "ConsoleTextMessages",
    "SignInCodes",
    "SignInResult",
    "delay_after",
]

log = logging.getLogger("guahao.sms")

CODE_LIFETIME = timedelta(minutes=5)
"""How long a sent code may be used."""

TRIES_PER_CODE = 5
"""Wrong entries a code survives; then the owner asks for a new one."""

FREE_FAILURES = 3
"""Wrong codes for one phone before attempts start to be spaced out."""

MAX_DELAY_SECONDS = 60
"""The longest wait between attempts: the owner is never kept out for longer."""

FAILURE_MEMORY = timedelta(hours=1)
"""A phone's failure count is forgotten this long after its last failure."""

TEMPLATE = "sign_in.code"

CHECK_CODE = """
local stored = redis.call('HGET', KEYS[1], 'digest')
if not stored then return 'missing' end
if tonumber(redis.call('HGET', KEYS[1], 'expires_ms')) <= tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1])
    return 'missing'
end
if stored == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 'ok'
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
return 'wrong'
"""
"""One atomic step on a one-time code's hash (``digest``, ``expires_ms``, ``tries``): compare,
burn the code on success, count the try otherwise. Shared by every one-time code (sign-in,
registration, patient relations)."""


def delay_after(failures: int) -> int:
    """Seconds the next attempt must wait after ``failures`` wrong codes in a row.

    >>> [delay_after(n) for n in (0, 3, 4, 5, 6, 9, 20)]
    [0, 0, 2, 4, 8, 60, 60]
    """
    if failures <= FREE_FAILURES:
        return 0
    return int(min(2 ** (failures - FREE_FAILURES), MAX_DELAY_SECONDS))


@dataclass(frozen=True)
class SignInResult:
    """Who signed in, and whether the account was made just now."""

    account_id: str
    created: bool


class ConsoleTextMessages:
    """The embedded ``Notifier`` for text messages: each is printed on the console (the
    demo's SMS gateway, logger ``guahao.sms``), the phone masked.

    Nothing is written to the account's inbox table: a sign-in code there would be a plain
    copy of a secret the platform otherwise keeps only as a hash, and whoever can read the
    inbox is signed in already. A production SMS adapter implements the same port.
    """

    async def notify(self, *, account_id: str, template: str, params: Mapping[str, str]) -> None:
        log.warning("SMS to %s: %s / %s", params.get("to", ""), params.get("zh"), params.get("en"))


class SignInCodes:
    """Send and check one-time sign-in codes; sign the phone's account in."""

    def __init__(
        self,
        ports: Ports,
        redis: aioredis.Redis,
        notifier: Notifier,
        rules: RuleBook | None = None,
    ) -> None:
        self._p = ports
        self._redis = redis
        self._notifier = notifier
        self._rules = rules or RuleBook(ports)
        self._check = redis.register_script(CHECK_CODE)

    def _keys(self, phone: str) -> tuple[str, str]:
        tag = self._p.vault.index("phone", phone)
        return f"sign-in:{{{tag}}}:code", f"sign-in:{{{tag}}}:failures"

    async def send(self, raw_phone: str, client: ClientContext | None = None) -> str:
        """Send a fresh code to the phone (any earlier code dies); returns the phone as
        normalised, for the next step's form."""
        phone = normalise_phone(raw_phone)
        limits = (await self._rules.region()).rate_limits
        if self._p.limiter is not None:
            await self._p.limiter.hit(
                [
                    (
                        "sign_in_code:phone",
                        limits.sign_in_code_per_phone,
                        self._p.vault.index("phone", phone),
                    ),
                    (
                        "sign_in_code:ip",
                        limits.sign_in_code_per_ip,
                        client.ip_hash if client else "",
                    ),
                ]
            )
        code = f"{secrets.randbelow(1_000_000):06d}"
        code_key, _ = self._keys(phone)
        expires = self._p.clock.now() + CODE_LIFETIME
        await self._redis.hset(
            code_key,
            mapping={
                "digest": self._digest(phone, code),
                "expires_ms": to_epoch_ms(expires),
                "tries": 0,
            },
        )
        # Redis forgets the key a little after the clock says it died (the clock decides).
        await self._redis.expire(code_key, int(CODE_LIFETIME.total_seconds()) + 60)
        minutes = int(CODE_LIFETIME.total_seconds() // 60)
        await self._notifier.notify(
            account_id=await self._account_of(phone) or "",
            template=TEMPLATE,
            params={
                "to": mask_phone(phone),
                "zh": f"【区域预约挂号】验证码 {code}，{minutes} 分钟内有效，请勿告诉他人。",
                "en": f"Guahao sign-in code {code}, valid for {minutes} minutes. Never share it.",
            },
        )
        return phone

    def _digest(self, phone: str, code: str) -> str:
        return self._p.vault.index("sign-in-code", f"{phone}:{code}")

    async def verify(
        self, raw_phone: str, code: str, client: ClientContext | None = None
    ) -> SignInResult:
        """Check the code; on success the phone's account (made now if new) is signed in."""
        phone = normalise_phone(raw_phone)
        code = "".join(ch for ch in code if not ch.isspace())
        limits = (await self._rules.region()).rate_limits
        if self._p.limiter is not None and client is not None:
            # attempts per address: one address must not guess across many phones
            await self._p.limiter.hit(
                [("sign_in_attempt:ip", limits.sign_in_attempt_per_ip, client.ip_hash)]
            )
        code_key, failures_key = self._keys(phone)
        now = self._p.clock.now()
        now_ms = to_epoch_ms(now)
        state = await self._redis.hgetall(failures_key)
        wait_until = int(state.get(b"wait_until_ms", 0))
        if now_ms < wait_until:
            refuse("SIGN_IN_CODE_WAIT", retry_after_seconds=max(1, (wait_until - now_ms) // 1000))
        outcome = await self._check(
            keys=[code_key],
            args=[self._digest(phone, code), now_ms, TRIES_PER_CODE],
        )
        if outcome != b"ok":
            failures = await self._redis.hincrby(failures_key, "count", 1)
            delay = delay_after(int(failures))
            await self._redis.hset(failures_key, "wait_until_ms", now_ms + delay * 1000)
            await self._redis.expire(failures_key, int(FAILURE_MEMORY.total_seconds()))
            refuse("SIGN_IN_CODE_INVALID", field="code", retry_after_seconds=delay)
        await self._redis.delete(failures_key)
        account_id = await self._account_of(phone)
        if account_id is not None:
            return SignInResult(account_id, created=False)
        return await self._create_account(phone)

    async def _account_of(self, phone: str) -> str | None:
        async with self._p.sessions() as session:
            return await account_id_by_phone(session, self._p.vault, phone)

    async def _create_account(self, phone: str) -> SignInResult:
        try:
            async with self._p.sessions() as session, session.begin():
                account_id = add_account_without_password(
                    session, self._p.vault, phone, self._p.clock.now()
                )
        except IntegrityError:
            # The same phone signed in twice at once: the other request made the account.
            existing = await self._account_of(phone)
            if existing is None:
                raise
            return SignInResult(existing, created=False)
        return SignInResult(account_id, created=True)
