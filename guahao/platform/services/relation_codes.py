"""One-time codes that prove a patient relation (就诊人关系验证码).

When a person is already someone's proven 本人 (or proven by any account), adding them as a
patient sends a six-digit code to their phone on file, through the same ``Notifier`` port as
sign-in codes; the relation exists only once the code is entered on the adding account. The
code is kept in Redis only as a keyed hash, works once, dies after a few wrong tries or five
minutes, and sends to one phone for one claim are limited as sign-in codes are (an allowance of
its own, so the feature cannot be used to flood someone with messages nor to spend their sign-in
codes, and one per claim, so a stranger's claim cannot spend the real person's).
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from guahao.platform.clock import to_epoch_ms
from guahao.platform.error_codes import refuse
from guahao.platform.personal_data import mask_phone
from guahao.platform.ports import Notifier
from guahao.platform.services.rule_book import RuleBook
from guahao.platform.services.runtime import Ports
from guahao.platform.services.sign_in_codes import CHECK_CODE, CODE_LIFETIME, TRIES_PER_CODE

__all__ = ["TEMPLATE", "RelationCodes"]

TEMPLATE = "patient.relation_code"


class RelationCodes:
    """Send and check the code that proves one patient row's relation to its person."""

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

    @staticmethod
    def _key(patient_id: str) -> str:
        return f"relation-code:{{{patient_id}}}"

    def _digest(self, patient_id: str, code: str) -> str:
        return self._p.vault.index("relation-code", f"{patient_id}:{code}")

    async def allow(self, *, patient_id: str, phone: str) -> None:
        """Count one send against the allowance, or refuse ``RATE_LIMITED``.

        Separate from ``send`` so that a caller adding or changing a patient counts inside its
        transaction: a refused send then rolls the row back instead of leaving a pending
        patient behind an error."""
        limits = (await self._rules.region()).rate_limits
        if self._p.limiter is not None:
            await self._p.limiter.hit(
                [
                    (
                        "relation_code:phone",
                        limits.sign_in_code_per_phone,
                        # Each claim has its own allowance at the phone: a stranger who keeps
                        # asking for codes for their claim must not use up the real person's.
                        f"{self._p.vault.index('phone', phone)}:{patient_id}",
                    )
                ]
            )

    async def send(
        self, *, patient_id: str, phone: str, holder_account_id: str, allowed: bool = False
    ) -> None:
        """Send a fresh code for ``patient_id`` to ``phone`` (any earlier code dies); counted
        against the allowance here unless ``allow`` already counted it."""
        if not allowed:
            await self.allow(patient_id=patient_id, phone=phone)
        code = f"{secrets.randbelow(1_000_000):06d}"
        expires = self._p.clock.now() + CODE_LIFETIME
        key = self._key(patient_id)
        await self._redis.hset(
            key,
            mapping={
                "digest": self._digest(patient_id, code),
                "expires_ms": to_epoch_ms(expires),
                "tries": 0,
            },
        )
        await self._redis.expire(key, int(CODE_LIFETIME.total_seconds()) + 60)
        minutes = int(CODE_LIFETIME.total_seconds() // 60)
        await self._notifier.notify(
            account_id=holder_account_id,
            template=TEMPLATE,
            params={
                "to": mask_phone(phone),
                "phone": phone,  # the one number a production SMS adapter sends to
                "zh": f"【区域预约挂号】有人申请将您添加为就诊人，验证码 {code}，"
                f"{minutes} 分钟内有效。仅在您本人同意时告诉对方。",
                "en": f"Guahao: someone asks to add you as a patient. Code {code}, valid for "
                f"{minutes} minutes. Share it only if you agree.",
            },
        )

    async def check(self, patient_id: str, code: str) -> None:
        """Accept the right code once; refuse a wrong, used or expired one."""
        code = "".join(ch for ch in code if not ch.isspace())
        outcome = await self._check(
            keys=[self._key(patient_id)],
            args=[
                self._digest(patient_id, code),
                to_epoch_ms(self._p.clock.now()),
                TRIES_PER_CODE,
            ],
        )
        if outcome != b"ok":
            refuse("PATIENT_PROOF_CODE_INVALID", field="code")
