"""Registration proven by a code sent to the phone (注册验证码), answering the same either way.

``POST /accounts`` used to answer ``ACCOUNT_EXISTS`` for a phone that had an account, which
told anyone which phones are customers. Now the first step always answers "a code was sent":
a phone without an account gets a code that completes the registration (the password's hash
waits in Redis beside the code's keyed hash, never the password); a phone with an account gets
a message saying someone tried to register with it and how to sign in, and no code. Both cost
the same work (one scrypt hash, one lookup, one Redis write, one message) and are limited per
phone as sign-in codes are, with an allowance of their own (so registering cannot be used to
spend the owner's sign-in codes).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.personal_data import mask_phone
from guahao.platform.ports import Notifier
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.sign_in_codes import CODE_LIFETIME, TRIES_PER_CODE

__all__ = ["ALREADY_REGISTERED_TEMPLATE", "TEMPLATE", "PendingRegistration", "RegistrationCodes"]

TEMPLATE = "account.registration_code"
ALREADY_REGISTERED_TEMPLATE = "account.registration_attempt"

# Compare the hash; on success hand back what waited with the code and burn it, otherwise
# count the try (one atomic step, so a code completes one registration only).
_TAKE = """
local stored = redis.call('HGET', KEYS[1], 'digest')
if not stored then return {'missing'} end
if tonumber(redis.call('HGET', KEYS[1], 'expires_ms')) <= tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1])
    return {'missing'}
end
if stored == ARGV[1] then
    local found = redis.call('HMGET', KEYS[1], 'password_hash', 'display_name')
    redis.call('DEL', KEYS[1])
    return {'ok', found[1], found[2]}
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
return {'wrong'}
"""


@dataclass(frozen=True)
class PendingRegistration:
    """What the first step left for the code to complete."""

    password_hash: str
    display_name: str


class RegistrationCodes:
    """Send the first step's message, and take the code that completes a registration."""

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
        self._take = redis.register_script(_TAKE)

    def _key(self, phone: str) -> str:
        return f"register:{{{self._p.vault.index('phone', phone)}}}:code"

    def _digest(self, phone: str, code: str) -> str:
        return self._p.vault.index("registration-code", f"{phone}:{code}")

    async def send(
        self,
        *,
        phone: str,
        password_hash: str,
        display_name: str,
        account_id: str | None,
    ) -> None:
        """A code for a phone without an account (``account_id`` None); for one with an
        account, the "someone tried to register" message and no code (any pending one dies)."""
        limits = (await self._rules.region()).rate_limits
        if self._p.limiter is not None:
            await self._p.limiter.hit(
                [
                    (
                        "register_code:phone",
                        limits.sign_in_code_per_phone,
                        self._p.vault.index("phone", phone),
                    )
                ]
            )
        key = self._key(phone)
        minutes = int(CODE_LIFETIME.total_seconds() // 60)
        if account_id is not None:
            await self._redis.delete(key)
            await self._notifier.notify(
                account_id=account_id,
                template=ALREADY_REGISTERED_TEMPLATE,
                params={
                    "to": mask_phone(phone),
                    "phone": phone,
                    "zh": "【区域预约挂号】有人尝试用您的手机号注册。您已有账号，可直接登录"
                    "（密码或短信验证码）；如非本人操作，请忽略。",
                    "en": "Guahao: someone tried to register with your phone number. You "
                    "already have an account: sign in (password or SMS code). If it was not "
                    "you, ignore this message.",
                },
            )
            return
        code = f"{secrets.randbelow(1_000_000):06d}"
        await self._redis.hset(
            key,
            mapping={
                "digest": self._digest(phone, code),
                "expires_ms": to_epoch_ms(self._p.clock.now() + CODE_LIFETIME),
                "tries": 0,
                "password_hash": password_hash,
                "display_name": display_name,
            },
        )
        await self._redis.expire(key, int(CODE_LIFETIME.total_seconds()) + 60)
        await self._notifier.notify(
            account_id="",
            template=TEMPLATE,
            params={
                "to": mask_phone(phone),
                "phone": phone,
                "zh": f"【区域预约挂号】注册验证码 {code}，{minutes} 分钟内有效，请勿告诉他人。",
                "en": f"Guahao registration code {code}, valid for {minutes} minutes. "
                "Never share it.",
            },
        )

    async def take(self, phone: str, code: str) -> PendingRegistration:
        """The registration the right code completes (once); refuse any other code."""
        code = "".join(ch for ch in code if not ch.isspace())
        outcome = await self._take(
            keys=[self._key(phone)],
            args=[self._digest(phone, code), to_epoch_ms(self._p.clock.now()), TRIES_PER_CODE],
        )
        if not outcome or outcome[0] != b"ok":
            refuse("SIGN_IN_CODE_INVALID", field="code")
        return PendingRegistration(
            password_hash=outcome[1].decode(), display_name=(outcome[2] or b"").decode()
        )
