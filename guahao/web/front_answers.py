"""The release crowd's hottest requests, answered before the framework: from memory, or, for
a granted hold, by the route's own service call.

At a release most of what arrives is one of three requests: a hold on a slot already sold
out, a doctor's availability and a search, and the answer to each is already in the process's
memory (the sold-out view, ``AvailabilityAnswers``, ``SearchAnswers``). Through Litestar each
still paid the routing, the middleware stack, the dependency resolution, the response objects
and, for the reads, a gzip of the whole body per request: two to three times the framework's
own plain answer (bench/profiles/front-1-*). ``FrontAnswers`` wraps Litestar's ASGI handler
(inside ``Litestar.__call__``, outside its routing and middleware) and answers exactly these:

- ``POST /api/v1/holds`` with a valid bearer token (verified as the guard verifies it; the
  verified-token memory answers the crowd's repeats), a usable ``Idempotency-Key``, an
  announced body within the API's limit that decodes, and a slot the sold-out view refuses
  for that account: the refusal is ``BookingService.refuse_known_sold_out``'s, which still
  counts the rate limits and the unmet demand;
- the same ``POST /api/v1/holds`` on a slot the view does not refuse, when a ``FrontGrants`` is
  given (``create_app`` always gives one): granted with the loop turn's other grants by
  ``BookingService.grant_holds`` and answered as the route would (guahao/web/front_grants.py);
- ``GET /api/v1/doctors/{id}/availability`` and ``GET /api/v1/search`` whose answer is
  remembered, with query parameters this module reads exactly as the routes do.

The answers are the framework's: status, body, headers (``Content-Type``,
``Content-Length``, gzip with ``Content-Encoding`` and ``Vary`` when the client accepts it and
the body reaches the compression's minimum, ``Retry-After`` on a limit), the request id, the
request metrics and hold outcomes, and the request log line
(tests/e2e/test_front_answers.py sends each request both ways and compares). A remembered
body is gzipped once (``GzipBodies``), off the event loop when it is large, into the bytes
Litestar's compression writes but for the gzip header's time field. A refusal carries a new
``hold_id`` each time, as through the route.

Everything else falls through untouched, and so does anything in doubt: another route or
method, a token the guard would refuse, a missing or too long key, a chunked or too large body, a
slot the view does not refuse when no ``FrontGrants`` is given (a unit given back is dropped
from the view when its announcement arrives, so the very next request goes to ``hold``), a
query parameter the route would read differently, an answer not remembered.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import re
import time
from collections import OrderedDict
from datetime import date, timedelta
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from guahao.platform.client_context import ClientContext
from guahao.platform.errors import GuahaoError
from guahao.platform.personal_data import PersonalDataVault
from guahao.platform.shared_calls import SharedCalls
from guahao.search.query import SearchQuery
from guahao.web.dependencies import device_hash, ip_hash
from guahao.web.front_grants import (
    GZIPPED,
    JSON,
    LENGTH_LATER,
    FrontGrants,
    GrantAnswer,
    refused,
)
from guahao.web.idempotency import MAX_KEY_LENGTH
from guahao.web.metrics import HOLD_ROUTE, WebMetrics, request_id_from, requests_telemetry
from guahao.web.request_bodies import (
    API_BODY_LIMIT,
    BodyTooLargeError,
    read_within,
    replaying,
)
from guahao.web.schemas import HoldCreate
from guahao.web.sold_out_refusals import SoldOutRefusals

__all__ = [
    "AVAILABILITY_ROUTE",
    "GZIP_LEVEL",
    "GZIP_MINIMUM_SIZE",
    "SEARCH_ROUTE",
    "FrontAnswers",
    "GzipBodies",
]

AVAILABILITY_ROUTE = "/api/v1/doctors/{doctor_id}/availability"
SEARCH_ROUTE = "/api/v1/search"
"""The route templates the metrics and logs name (Litestar's, for the same requests)."""

GZIP_MINIMUM_SIZE = 500
"""The app's ``CompressionConfig.minimum_size`` (set from here): smaller bodies go out as
they are."""

GZIP_LEVEL = 9
"""The app's ``CompressionConfig.gzip_compress_level`` (set from here), so the bytes are the
framework's."""

GZIP_INLINE_LIMIT = 8 * 1024
"""Bodies above this are compressed in a worker thread (a 50 kB answer at level 9 is about a
millisecond of CPU the event loop must not spend)."""

_AVAILABILITY_PREFIX = "/api/v1/doctors/"
_AVAILABILITY_SUFFIX = "/availability"
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_COUNT = re.compile(r"^[1-9][0-9]{0,5}$")
_MAX_Q = 100  # the route's ``max_length``
_SCALAR_PARAMS = frozenset(
    ["q", "category", "withinDays", "date", "sort", "page", "pageSize", "facets"]
)
_LIST_PARAMS = {
    "kind": "kind",
    "district": "district",
    "grade": "grade",
    "catalogCode": "catalogCode",
    "title": "title",
    "hospitalId": "hospitalId",
}
_hold_decoder = msgspec.json.Decoder(HoldCreate)
_CLIENTS_KEPT = 50_000  # addresses, and devices, whose hashes are remembered (~10 MB each)
_DEVICE_LONGEST_KEPT = 200  # a longer device id (device_hash cuts it at 200) is not kept
_Key = TypeVar("_Key", str, bytes)


def _remember(memory: dict[_Key, str], key: _Key, hashed: str) -> str:
    """``hashed``, remembered under ``key``; a full memory is emptied first (at once: taking
    the oldest key one by one would walk past the emptied slots at the dictionary's front)."""
    if len(memory) >= _CLIENTS_KEPT:
        memory.clear()
    memory[key] = hashed
    return hashed


class _FallThroughError(Exception):
    """The request is not one this module answers: the framework does."""


class GzipBodies:
    """The gzip of each remembered body, made once per body (an LRU of ``size``).

    Keyed by the body itself: a cache's answer is one ``bytes`` object per generation, whose
    hash Python computes once, so a hit is a dictionary lookup; a new generation is a new
    body and gets its own gzip. The bytes are what Litestar's compression writes (one
    ``GzipFile`` write, a flush and the close), so ``Content-Length`` is the framework's too.
    """

    def __init__(self, size: int = 2_000) -> None:
        self._size = size
        self._made: OrderedDict[bytes, bytes] = OrderedDict()
        self._making: SharedCalls[bytes, bytes] = SharedCalls()

    def __len__(self) -> int:
        return len(self._made)

    async def of(self, body: bytes) -> bytes:
        """``body`` gzipped, made once and kept (the latest asked last); one over
        ``GZIP_INLINE_LIMIT`` is compressed in a worker thread, once however many requests
        ask for it meanwhile."""
        made = self._made.get(body)
        if made is not None:
            self._made.move_to_end(body)
            return made
        if len(body) <= GZIP_INLINE_LIMIT:
            return self._keep(body, compress(body))
        return self._keep(body, await self._making(body, lambda: asyncio.to_thread(compress, body)))

    def _keep(self, body: bytes, made: bytes) -> bytes:
        self._made[body] = made
        self._made.move_to_end(body)
        while len(self._made) > self._size:
            self._made.popitem(last=False)
        return made


def compress(body: bytes) -> bytes:
    """``body`` gzipped as Litestar's ``GzipCompression`` does (the header's time is zero:
    the framework writes its own clock there, four bytes that change nothing decoded).

    >>> gzip.decompress(compress(b'{"a":1}'))
    b'{"a":1}'
    """
    buffer = io.BytesIO()
    compressor = gzip.GzipFile(mode="wb", fileobj=buffer, compresslevel=GZIP_LEVEL, mtime=0)
    compressor.write(body)
    compressor.flush()
    compressor.close()
    return buffer.getvalue()


class FrontAnswers:
    """ASGI app around Litestar's handler (``app.asgi_handler``); reads the platform and the
    token issuer from ``scope["app"].state`` at each request, as the routes do."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: WebMetrics,
        *,
        gzip_bodies: GzipBodies | None = None,
        grants: FrontGrants | None = None,
    ) -> None:
        self.app = app
        self.grants = grants
        """The lean grant path (None: every grant through the framework)."""
        self.metrics = metrics
        self.gzip_bodies = gzip_bodies or GzipBodies()
        self.sold_out = SoldOutRefusals()
        self._ip_hashes: dict[str, str] = {}
        self._device_hashes: dict[bytes, str] = {}
        self._clients_vault: PersonalDataVault | None = None
        self.answered = 0
        """Requests answered here since the start (tests and the bench's report)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            method = scope["method"]
            path = scope["path"]
            if method == "POST" and path == HOLD_ROUTE:
                await self._hold(scope, receive, send)
                return
            if method == "GET" and (
                path == SEARCH_ROUTE
                or (path.startswith(_AVAILABILITY_PREFIX) and path.endswith(_AVAILABILITY_SUFFIX))
            ):
                await self._read(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # ---------------------------------- holds: sold-out refusals here, grants by front_grants

    async def _hold(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = _headers(scope)
        # read as a mapping: ``state.tokens`` goes through the state's ``__getattr__`` after
        # a failed attribute lookup, 0.6 µs against 0.08 (twice per refusal)
        state = scope["app"].state
        account = _account(state["tokens"], headers.get(b"authorization"))
        key = headers.get(b"idempotency-key", b"")
        length = headers.get(b"content-length", b"")
        if (
            account is None
            or _MANY in headers.values()
            or not 0 < len(key) <= MAX_KEY_LENGTH
            or not length.isdigit()
            or int(length) > API_BODY_LIMIT
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_within(receive, API_BODY_LIMIT)  # the length judged above
        except BodyTooLargeError:  # more bytes than announced: the route's answer for it
            await self.app(scope, replaying(b"", receive), send)
            return
        try:
            slot_id = _hold_decoder.decode(body).slot_id
        except (msgspec.DecodeError, UnicodeDecodeError):
            slot_id = None
        if slot_id is None:
            await self.app(scope, replaying(body, receive), send)
            return
        platform = state["platform"]
        client = scope.get("client")
        context = self._client(
            platform.ports.vault, client[0] if client else "", headers.get(b"x-device-id", b"")
        )
        try:  # the service asks the sold-out view (None: it does not refuse)
            hold_id = await platform.bookings.refuse_known_sold_out(
                account_id=account, slot_id=slot_id, client=context
            )
        except GuahaoError as exc:  # over a rate limit
            await self._answer(scope, send, refused(exc), HOLD_ROUTE, started, headers)
            return
        except Exception:  # an outage before the limits were counted: the route answers it
            # the facts or the rules could not be read (nothing is counted before them):
            # ``hold`` meets the same outage and answers it as the exception handlers do
            await self.app(scope, replaying(body, receive), send)
            return
        if hold_id is not None:
            answer = self.sold_out.answer(slot_id, hold_id)
            await self._answer(scope, send, answer, HOLD_ROUTE, started, headers)
            return
        if self.grants is None:  # the view does not refuse: ``hold`` decides
            await self.app(scope, replaying(body, receive), send)
            return
        # a hold to grant: the lean path (guahao/web/front_grants.py), the route's answer
        request_id = request_id_from(headers.get(b"x-request-id"))
        answer = await self.grants.grant(
            platform.bookings,
            account_id=account,
            slot_id=slot_id,
            idempotency_key=key.decode("latin-1"),
            client=context,
            accepted=headers.get(b"accept-encoding"),
            request_id=request_id,
        )
        await self._answer(scope, send, answer, HOLD_ROUTE, started, headers, request_id)

    def _client(self, vault: PersonalDataVault, host: str, device: bytes) -> ClientContext:
        """``client_context`` of an address and a device, its two keyed hashes remembered
        apart: computed per request they were 4 % of a sold-out answer (bench/profiles/
        front-2-*), for a crowd behind a few thousand addresses.

        What is remembered is strings under strings and bytes, which the garbage collector
        does not track; the context is made per request and freed by reference counting. An
        (address, device) tuple and a context remembered per new citizen stayed in the young
        generation while the frees of older objects kept its collection away, and one young
        collection then walked tens of thousands (bench/README.md, issue 15)."""
        if self._clients_vault is not vault:
            self._ip_hashes.clear()
            self._device_hashes.clear()
            self._clients_vault = vault
        ip = self._ip_hashes.get(host)
        if ip is None:
            ip = _remember(self._ip_hashes, host, ip_hash(vault, host))
        if len(device) > _DEVICE_LONGEST_KEPT:  # cut at 200 characters anyway: never remembered
            return ClientContext(ip, device_hash(vault, device.decode("latin-1")))
        hashed = self._device_hashes.get(device)
        if hashed is None:
            hashed = _remember(
                self._device_hashes, device, device_hash(vault, device.decode("latin-1"))
            )
        return ClientContext(ip, hashed)

    # ------------------------------------------------------------------ remembered reads

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        platform = scope["app"].state["platform"]
        try:
            if scope["path"] == SEARCH_ROUTE:
                route = SEARCH_ROUTE
                body = platform.search.remembered(_search_query(scope["query_string"]))
            else:
                route = AVAILABILITY_ROUTE
                body = _availability(platform.availability_answers, scope)
        except Exception:  # a read changes nothing: the route answers (or refuses) it
            body = None
        if body is None:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        accepted = headers.get(b"accept-encoding")
        if accepted is _MANY:
            await self.app(scope, receive, send)
            return
        response = [JSON, LENGTH_LATER]
        if accepted is not None and b"gzip" in accepted and len(body) >= GZIP_MINIMUM_SIZE:
            body = await self.gzip_bodies.of(body)
            response += GZIPPED
        await self._answer(scope, send, (200, body, response, None), route, started, headers)

    # ------------------------------------------------------------------ the answer

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        answer: GrantAnswer,
        route: str,
        started: float,
        request: dict[bytes, bytes],
        request_id: str | None = None,
    ) -> None:
        """Send one whole answer (status, body, headers, the refusal's code), then count and
        log it as the telemetry middleware does (``request``: ``_headers``' reading;
        ``request_id``: the id already given to the request, if any)."""
        status, body, headers, error_code = answer
        if request_id is None:
            request_id = request_id_from(request.get(b"x-request-id"))
        scope["state"]["request_id"] = request_id  # the server's log of lost connections
        headers[headers.index(LENGTH_LATER)] = (b"content-length", str(len(body)).encode())
        headers.append((b"x-request-id", request_id.encode()))
        self.answered += 1
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            requests_telemetry(
                self.metrics,
                str(scope.get("method", "")),
                route,
                status,
                time.perf_counter() - started,
                request_id,
                error_code,
            )


_MANY = b"\x00many"  # a header sent more than once: fall through


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request headers this module reads; one sent twice maps to ``_MANY``."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered in _WANTED:
            if lowered not in found:
                found[lowered] = value
            elif lowered != _REQUEST_ID:  # the first request id is the one (request_id_of)
                found[lowered] = _MANY
    return found


_REQUEST_ID = b"x-request-id"
_WANTED = frozenset(
    [
        b"authorization",
        b"idempotency-key",
        b"content-length",
        b"x-device-id",
        b"accept-encoding",
        _REQUEST_ID,
    ]
)


def _account(tokens: Any, authorization: bytes | None) -> str | None:
    """The citizen a valid bearer token names, or None for anything the guard would refuse
    (the guard then answers it)."""
    if authorization is None or authorization is _MANY:
        return None
    scheme, _sep, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        account: str = tokens.account_of(token.strip())
    except GuahaoError:
        return None
    return account


def _parameters(query_string: bytes) -> list[tuple[str, str]]:
    """``a=1&b=2`` as the route reads it (``+`` a space, percent-escapes UTF-8); anything
    unusual (a name without ``=``, bytes that are not UTF-8) falls through."""
    found: list[tuple[str, str]] = []
    if not query_string:
        return found
    for part in query_string.split(b"&"):
        if not part:
            continue
        name, equals, value = part.partition(b"=")
        if not equals:
            raise _FallThroughError
        try:
            found.append((_unquote(name), _unquote(value)))
        except UnicodeDecodeError as exc:
            raise _FallThroughError from exc
    return found


def _unquote(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def _search_query(query_string: bytes) -> SearchQuery:
    """The route's ``SearchQuery`` for these parameters, or ``_FallThroughError``."""
    scalars: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for name, value in _parameters(query_string):
        if name in _LIST_PARAMS:
            lists.setdefault(name, []).append(value)
        elif name in _SCALAR_PARAMS and name not in scalars:
            scalars[name] = value
        else:  # a parameter the route does not read, or one given twice
            raise _FallThroughError
    q = scalars.get("q", "")
    if len(q) > _MAX_Q:
        raise _FallThroughError
    on_date = scalars.get("date")
    if on_date is not None and not _ISO_DATE.match(on_date):
        raise _FallThroughError
    facets = scalars.get("facets", "true")
    if facets not in ("true", "false"):
        raise _FallThroughError
    return msgspec.convert(
        {
            "q": q,
            "filters": {
                **{field: lists.get(name, []) for name, field in _LIST_PARAMS.items()},
                "category": scalars.get("category"),
                "withinDays": _count(scalars.get("withinDays")),
                "onDate": date.fromisoformat(on_date).isoformat() if on_date else None,
            },
            "sort": scalars.get("sort", "relevance"),
            "page": _count(scalars.get("page")) or 1,
            "pageSize": _count(scalars.get("pageSize")) or 20,
            "facets": facets == "true",
        },
        SearchQuery,
    )


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    if not _COUNT.match(text):
        raise _FallThroughError
    return int(text)


def _availability(answers: Any, scope: Scope) -> bytes | None:
    """The remembered answer of the availability route for this request, or None."""
    path: str = scope["path"]
    doctor_id = path[len(_AVAILABILITY_PREFIX) : -len(_AVAILABILITY_SUFFIX)]
    if not doctor_id or "/" in doctor_id:
        return None
    start: date | None = None
    end: date | None = None
    for name, value in _parameters(scope["query_string"]):
        if not _ISO_DATE.match(value):
            raise _FallThroughError
        if name == "from" and start is None:
            start = date.fromisoformat(value)
        elif name == "to" and end is None:
            end = date.fromisoformat(value)
        else:
            raise _FallThroughError
    first = start or answers.today()
    last = end or first + timedelta(days=14)
    if last < first or (last - first).days > 31:  # the route refuses it
        raise _FallThroughError
    body: bytes | None = answers.remembered(doctor_id, start=first, end=last)
    return body
