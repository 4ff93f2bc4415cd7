"""Text messages (短信) behind the notifier port: the sandbox SMS gateway and the adapter.

``SmsNotifier`` implements ``Notifier`` by sending the message's Chinese text to the account's
mobile number through an SMS gateway. The embedded gateway is ``SandboxSmsGateway``: like the
sandbox payment gateway it behaves as a real provider does where the platform can observe it
(one message per idempotency key, however often it is asked), and records in Redis what it
would have sent, so a demo, an operator and the tests can read it (``sent``). The inbox keeps
its copy either way (the app shows it); the SMS is the extra channel a real region buys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final, Protocol

import msgspec
import redis.asyncio as aioredis

from guahao.platform.clock import Clock
from guahao.platform.persistence.tables import AccountRow
from guahao.platform.ports import Notifier
from guahao.platform.services.runtime import Ports

__all__ = ["SandboxSmsGateway", "SandboxText", "SmsGateway", "SmsNotifier"]

_PREFIX: Final = "sandbox-sms"
_KEEP_SECONDS: Final = 30 * 24 * 3600


class SandboxText(msgspec.Struct, frozen=True):
    """One text message the sandbox would have sent."""

    key: str
    to: str
    text: str
    sent_at: datetime


_decoder = msgspec.json.Decoder(SandboxText)


class SmsGateway(Protocol):
    """An SMS provider: sends ``text`` to ``to`` once per ``key``."""

    async def send(self, *, to: str, text: str, key: str) -> bool:
        """Send (True), or recognise a repeat of ``key`` and send nothing (False)."""
        ...


class SandboxSmsGateway:
    """A Redis-backed stand-in for an SMS provider that records instead of sending."""

    def __init__(self, redis: aioredis.Redis, clock: Clock) -> None:
        self._redis = redis
        self._clock = clock

    async def send(self, *, to: str, text: str, key: str) -> bool:
        record = SandboxText(key=key, to=to, text=text, sent_at=self._clock.now())
        first = await self._redis.set(
            f"{_PREFIX}:key:{key}", "1", nx=True, ex=_KEEP_SECONDS
        )  # one message per key, as providers dedupe by the caller's id
        if not first:
            return False
        await self._redis.rpush(f"{_PREFIX}:sent", msgspec.json.encode(record))
        return True

    async def sent(self, to: str | None = None) -> Sequence[SandboxText]:
        """What was sent (to one number), oldest first."""
        raw = await self._redis.lrange(f"{_PREFIX}:sent", 0, -1)
        texts = [_decoder.decode(item) for item in raw]
        return [t for t in texts if to is None or t.to == to]


class SmsNotifier:
    """``Notifier`` by SMS to the account's phone, plus the inbox copy the app shows."""

    def __init__(self, ports: Ports, gateway: SmsGateway, inbox: Notifier) -> None:
        self._p = ports
        self._gateway = gateway
        self._inbox = inbox

    async def notify(self, *, account_id: str, template: str, params: Mapping[str, str]) -> None:
        await self._inbox.notify(account_id=account_id, template=template, params=params)
        async with self._p.sessions() as session:
            account = await session.get(AccountRow, account_id)
        if account is None:
            return
        phone = self._p.vault.open("phone", account.phone_enc)
        key = params.get("dedupe_key") or f"{template}:{account_id}"
        await self._gateway.send(to=phone, text=params.get("zh", ""), key=key)
