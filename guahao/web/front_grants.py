"""Granted holds answered before the framework: the lean path of ``POST /api/v1/holds``.

At a release the holds that are granted cost the server about seven times a plain JSON
answer, and half of that was Litestar around the route, not the grant: the routing, the
telemetry, idempotency, compression and exception middlewares, the guard's copy of the
handler, the signature model and the response objects (bench/profiles/grant4-23-*).
``FrontAnswers`` already reads everything a hold needs before the framework (a token the
guard would accept, a usable ``Idempotency-Key``, an announced body within the limit that
decodes to a ``HoldCreate``); when the sold-out view does not refuse the slot it hands the
request here instead of to the framework, and ``FrontGrants`` makes the route's call for the
grants asked in the same loop turn together (``BookingService.grant_holds``, which keeps every
rule of a hold: the rate limits, the slot's facts, the pool's own idempotency record, the group
commit and the survival check after it; one task a turn, each request woken once, with its
answer: bench/README.md, branch grant8) and returns each request the route's answer:

- a grant: 201 with the ``BookingDetail`` of ``held_answer``, ``Idempotent-Replayed: true``
  on a repeated key, gzipped as the compression middleware would when the client accepts it
  and the body reaches its minimum;
- a refusal: ``refusal_answer``'s status, body and ``Retry-After``, as the exception
  handler writes it;
- anything else raised (the database or Redis away): the answer of the app's exception
  handler for it (``guahao.web.errors.exception_handlers``, looked up as Litestar does).

``FrontAnswers`` sends it, counts it and logs it as the telemetry middleware does (with the
refusal's code for the hold outcomes). tests/e2e/test_front_grants.py sends the same requests
both ways and compares the answers, the metrics and the log lines.

Requests this module cannot vouch for never reach it: a body that does not decode, a key or
token the framework would refuse, an ``Accept-Encoding`` sent twice. They go to the
framework, which answers them as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from inspect import getmro
from typing import Any

import msgspec
import structlog

from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.services.booking_service import BookingService, HoldAsk, HoldOutcome
from guahao.platform.services.queries import held_answer
from guahao.web.errors import exception_handlers, refusal_answer

__all__ = ["GZIPPED", "JSON", "LENGTH_LATER", "FrontGrants", "GrantAnswer", "refused"]

GrantAnswer = tuple[int, bytes, list[tuple[bytes, bytes]], str | None]
"""(status, body, headers, the refusal's code): what ``FrontAnswers._answer`` sends, with
``LENGTH_LATER`` among the headers for it to fill in."""

JSON = (b"content-type", b"application/json")
LENGTH_LATER = (b"content-length", b"")
"""A placeholder ``FrontAnswers._answer`` replaces with the body's length once it is known."""
GZIPPED = [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]
"""The headers the compression middleware adds to a body it gzipped."""
_REPLAYED = (b"idempotent-replayed", b"true")
_encoder = msgspec.json.Encoder()  # the bytes Litestar's msgspec encoder writes


def refused(exc: GuahaoError) -> GrantAnswer:
    """A refusal as the exception handler writes it (``refusal_answer``): its extra headers
    (``Retry-After``) first, then the JSON type; for every answer made before the framework."""
    status, payload, extra = refusal_answer(exc)
    return _framed(status, payload, extra, exc.code)


def _framed(status: int, content: Any, extra: Mapping[str, str], code: str | None) -> GrantAnswer:
    """An error answer as the framework writes it: the handler's extra headers first, then
    the JSON type, the body encoded by Litestar's encoder."""
    headers = [(n.lower().encode(), v.encode("latin-1")) for n, v in extra.items()]
    return status, _encoder.encode(content), [*headers, JSON, LENGTH_LATER], code


@dataclass(slots=True)
class _Asked:
    """One request in a loop turn's batch, and the future its request awaits."""

    ask: HoldAsk
    accepted: bytes | None
    request_id: str
    answer: asyncio.Future[GrantAnswer]


def _settle(answer: asyncio.Future[GrantAnswer], made: GrantAnswer) -> None:
    if not answer.done():  # its client went away meanwhile: nobody to answer
        answer.set_result(made)


class FrontGrants:
    """The lean grant path (see the module docstring); one per app, held by ``FrontAnswers``.

    ``minimum_size`` and ``compress`` are the front's gzip (``GZIP_MINIMUM_SIZE`` and
    ``compress``), passed in so that both write the compression middleware's bytes from one
    source.
    """

    def __init__(
        self,
        *,
        minimum_size: int,
        compress: Any,
        handlers: Mapping[type[Exception] | int, Any] = exception_handlers,
    ) -> None:
        self._minimum_size = minimum_size
        self._compress = compress
        self._handlers = handlers
        self.answered = 0
        """Holds answered here since the start (tests and the bench's report)."""
        self.batches = 0
        """Batches granted here since the start (tests and the bench's report)."""
        self._waiting: list[_Asked] = []
        """The grants asked in this loop turn, for the batch that starts at its end."""
        self._running: set[asyncio.Task[None]] = set()
        """The batches under way (the loop keeps only a weak reference to a task)."""

    async def grant(
        self,
        bookings: BookingService,
        *,
        account_id: str,
        slot_id: str,
        idempotency_key: str,
        client: ClientContext,
        accepted: bytes | None,
        request_id: str,
    ) -> GrantAnswer:
        """The holds route's answer to this request, made by the route's own service, with
        the other grants asked in the same loop turn (``BookingService.grant_holds``);
        ``request_id`` goes on the log lines its fault's answer writes."""
        self.answered += 1
        answer: asyncio.Future[GrantAnswer] = asyncio.get_running_loop().create_future()
        if not self._waiting:  # the turn's first: the batch starts once the others are in
            asyncio.get_running_loop().call_soon(self._start, bookings)
        self._waiting.append(
            _Asked(
                HoldAsk(account_id, slot_id, idempotency_key, client), accepted, request_id, answer
            )
        )
        return await answer

    def _start(self, bookings: BookingService) -> None:
        """Start the batch of the grants waiting. Called soon rather than made a task at the
        first grant: the task's first step then ran before some requests read in the same
        turn reached here, and over HTTP a batch held 11 grants instead of 21 and saved 6 %
        of a grant's CPU instead of 14 % (bench/README.md, branch grant8)."""
        task = asyncio.create_task(self._answer_turn(bookings), name="front-grants")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer_turn(self, bookings: BookingService) -> None:
        """Grant the requests waiting and answer each as soon as its outcome is known (one
        that goes on alone, an HIS's hold say, does not hold up the others), its refusal or
        fault its own."""
        batch, self._waiting = self._waiting, []
        self.batches += 1

        def answered(n: int, outcome: HoldOutcome | Exception) -> None:
            _settle(batch[n].answer, self._answer(outcome, batch[n]))

        try:  # every request is answered through ``answered``, as its outcome is known
            await bookings.grant_holds([asked.ask for asked in batch], answered)
        except Exception as exc:  # the batch itself failed: each the handler's answer for it
            for asked in batch:
                if not asked.answer.done():
                    _settle(asked.answer, self._handled(exc, asked.request_id))
        finally:  # cancelled with the process: nobody may wait forever
            for asked in batch:
                asked.answer.cancel()

    def _answer(self, outcome: HoldOutcome | Exception, asked: _Asked) -> GrantAnswer:
        """A grant's 201, or the answer to its refusal or fault."""
        try:
            if isinstance(outcome, Exception):
                raise outcome
            detail = held_answer(outcome.granted, outcome.facts)
        except GuahaoError as exc:
            return refused(exc)
        except Exception as exc:  # an outage: the exception handler's answer, as the route's
            return self._handled(exc, asked.request_id)
        body = _encoder.encode(detail)
        headers = [_REPLAYED] if outcome.replayed else []
        headers += [JSON, LENGTH_LATER]
        accepted = asked.accepted
        if accepted is not None and b"gzip" in accepted and len(body) >= self._minimum_size:
            body = self._compress(body)
            headers += GZIPPED
        return 201, body, headers, None

    def _handled(self, exc: Exception, request_id: str) -> GrantAnswer:
        """What the app's exception handler for ``exc`` answers (the first class of its MRO
        in the table, as Litestar looks it up). The handlers other than ``GuahaoError``'s do
        not read the request; what they log carries the request's id, as on the framework's
        path (the batch runs in a task of its own, outside every request's context)."""
        handler = next(
            (self._handlers[cls] for cls in getmro(type(exc)) if cls in self._handlers), None
        )
        if handler is None:  # the table ends with ``Exception``: never reached
            raise exc
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            response = handler(None, exc)
        return _framed(response.status_code, response.content, response.headers, None)
