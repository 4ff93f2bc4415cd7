"""Holds on a slot this process knows to be sold out, answered before the framework's work.

At a release the crowd keeps asking for slots that are gone, and each such request went
through the idempotency store (two Redis commands), Litestar's dependency resolution, the
guard and a database-free but still long service path before being refused. This middleware
sits in front of the idempotency middleware and looks at ``POST /api/v1/holds`` only: when
the slot is in the process's sold-out view (``SoldOutView``, kept true by the pool's
give-back announcements), the request goes straight to ``BookingService.hold``, which still
counts the rate limits and the unmet demand and refuses from memory, and the refusal is sent
as the exception handler would send it (same status, body and headers).

The crowd's repeats are answered earlier still, before Litestar's routing
(``guahao.web.front_answers``); what reaches this middleware is what the front could not
vouch for, chiefly a token this process has not verified yet, which is verified here.

Everything else passes through untouched: another route, a request the guard or the
validation would refuse (no valid token, no usable ``Idempotency-Key``, a body that does not
decode), and every slot not known to be sold out. A refusal changes nothing, so no
idempotency record is written for it: a retry with the same key is answered afresh (as the
API guide says). Should a unit come back between the view's answer and the service's own
check, the service grants, and the grant is answered exactly as the route answers it (the
pool's replay record still answers a retry with that hold).
"""

from __future__ import annotations

import msgspec
from litestar.enums import ScopeType
from litestar.serialization import encode_json
from litestar.types import ASGIApp, Receive, Scope, Send

from guahao.platform.clock import to_epoch_ms
from guahao.platform.errors import GuahaoError
from guahao.web.dependencies import client_context
from guahao.web.errors import refusal_answer
from guahao.web.idempotency import MAX_KEY_LENGTH
from guahao.web.metrics import HOLD_ROUTE
from guahao.web.request_bodies import BodyTooLargeError, body_limit_of, read_bounded, replaying
from guahao.web.schemas import HoldCreate

__all__ = ["SoldOutAnswers"]

_hold_decoder = msgspec.json.Decoder(HoldCreate)


class SoldOutAnswers:
    """ASGI middleware (after routing, before ``IdempotencyMiddleware``); needs
    ``app.state.platform`` and ``app.state.tokens``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != ScopeType.HTTP
            or scope["method"] != "POST"
            or scope.get("path_template") != HOLD_ROUTE
        ):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        key = headers.get("idempotency-key", "")
        length = headers.get("content-length", "")
        account = self._account(scope, headers.get("authorization", ""))
        if (
            account is None
            or not 0 < len(key) <= MAX_KEY_LENGTH
            or not length.isdigit()
            or int(length) > body_limit_of(scope)
        ):
            await self.app(scope, receive, send)  # the guard and the validation answer
            return
        try:
            body = await read_bounded(scope, receive, body_limit_of(scope))
        except BodyTooLargeError:  # more bytes than announced: the route's answer for it
            await self.app(scope, replaying(b"", receive), send)
            return
        try:
            slot_id = _hold_decoder.decode(body).slot_id
        except (msgspec.DecodeError, UnicodeDecodeError):  # the route's validation answers
            slot_id = None
        platform = scope["app"].state.platform
        now_ms = to_epoch_ms(platform.ports.clock.now())
        if slot_id is None or not platform.ports.inventory.refuses_sold_out(
            slot_id, account, now_ms
        ):
            await self.app(scope, replaying(body, receive), send)
            return
        client = scope.get("client")
        context = client_context(
            platform.ports.vault, client[0] if client else "", headers.get("x-device-id", "")
        )
        try:
            booking = await platform.bookings.hold(
                account_id=account, slot_id=slot_id, idempotency_key=key, client=context
            )
        except GuahaoError as exc:
            scope.setdefault("state", {})["error_code"] = exc.code  # the hold metrics' label
            status, payload, extra = refusal_answer(exc)
            await _answer(send, status, encode_json(payload), extra)
            return
        detail = await platform.queries.booking(booking.id, account_id=account)
        await _answer(send, 201, encode_json(detail), {})

    @staticmethod
    def _account(scope: Scope, authorization: str) -> str | None:
        """The citizen a bearer token names (the per-process verified-token memory), or None
        for anything the guard would refuse."""
        scheme, _sep, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            account: str = scope["app"].state.tokens.account_of(token.strip())
        except GuahaoError:
            return None
        return account


def _headers(scope: Scope) -> dict[str, str]:
    wanted = (b"authorization", b"idempotency-key", b"content-length", b"x-device-id")
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered in wanted:
            found[lowered.decode("latin-1")] = value.decode("latin-1")
    return found


async def _answer(send: Send, status: int, body: bytes, extra: dict[str, str]) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers.extend(
        (name.lower().encode(), value.encode("latin-1")) for name, value in extra.items()
    )
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
